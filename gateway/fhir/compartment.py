"""Which Patient a resource belongs to (its Patient compartment, FHIR R4 compartmentdefinition-patient).

Only the element that names the patient directly is used, per type, as the compartment
definition's parameters do: Specimen.subject, Consent.patient, ResearchSubject.individual,
Provenance.patient is not an element in R4 so it is left out; a Patient is its own.
"""

from __future__ import annotations

from typing import Any

PATIENT_ELEMENT = {
    "Specimen": "subject",
    "Consent": "patient",
    "ResearchSubject": "individual",
    "Condition": "subject",
    "Observation": "subject",
    "MedicationRequest": "subject",
    "Encounter": "subject",
    "Procedure": "subject",
    "DiagnosticReport": "subject",
    "AllergyIntolerance": "patient",
}


def patient_of(resource: dict[str, Any]) -> str | None:
    """The logical id of the Patient `resource` belongs to, or None."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return resource.get("id")
    element = PATIENT_ELEMENT.get(rtype or "")
    if element is None:
        return None
    ref = (resource.get(element) or {}).get("reference") or ""
    kind, _, ident = ref.rpartition("/")
    if kind.rsplit("/", 1)[-1] == "Patient" and ident:
        return ident
    return None
