"""Which resource types the gateway serves, and from where."""

from __future__ import annotations

OWNED_TYPES: tuple[str, ...] = (
    "Specimen", "Consent", "ResearchStudy", "ResearchSubject", "Patient", "Group",
    "Organization", "Practitioner", "Provenance", "AuditEvent",
)
"""Stored here, full REST (writes by internal principals only)."""

CONFORMANCE_TYPES: tuple[str, ...] = (
    "StructureDefinition", "ValueSet", "CodeSystem", "SearchParameter", "ConceptMap",
    "OperationDefinition", "ImplementationGuide",
)
"""The biobank's profiles and terminology from profiles/ and mappings/: loaded on start, read and search."""

PROXIED_TYPES: tuple[str, ...] = (
    "Condition", "Observation", "MedicationRequest", "Encounter", "Procedure", "DiagnosticReport",
    "AllergyIntolerance",
)
"""Owned by the hospital EHR: read and search proxied upstream."""

STORED_TYPES: frozenset[str] = frozenset(OWNED_TYPES + CONFORMANCE_TYPES)
