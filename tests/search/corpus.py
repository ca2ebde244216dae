"""A small hand-written biobank: 3 patients, 1 organisation, 2 studies, 3 enrolments, 3 consents,
5 specimens. Every value is chosen so that each parameter type, modifier and prefix has a
case whose expected result set can be worked out by hand (see test_parameters.py)."""

from __future__ import annotations

from typing import Any

BB = "https://biobank.massgeneral.org/fhir"
SCT = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
GENOTYPING = f"{BB}/StructureDefinition/genotyping"
STORAGE = "https://fhir.bbmri-eric.eu/fhir/StructureDefinition/miabis-sample-storage-temperature-extension"
PERMISSION = f"{BB}/CodeSystem/consent-permission"
MIABIS_TEMPERATURE = "https://fhir.bbmri-eric.eu/fhir/CodeSystem/miabis-storage-temperature"


def _quantity(value: float, code: str) -> list[dict[str, Any]]:
    return [{"specimenQuantity": {"value": value, "unit": code, "system": UCUM, "code": code}}]


def _genotyping(genotyped: bool, platform: str | None = None) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"url": "genotyped", "valueBoolean": genotyped}]
    if platform:
        parts.append({"url": "platform", "valueCoding": {"system": f"{BB}/CodeSystem/genotyping-platform",
                                                          "code": platform}})
    return [{"url": GENOTYPING, "extension": parts}]


def _permits(*kinds: str) -> dict[str, Any]:
    return {"type": "deny", "provision": [{"type": "permit", "purpose": [{"system": PERMISSION, "code": k}]}
                                          for k in kinds]}


ORGANIZATION = {"resourceType": "Organization", "id": "o1", "name": "Massachusetts General Biobank"}

PATIENTS = [
    {"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:mrn", "value": "M1"}],
     "name": [{"family": "Müller", "given": ["Anna"]}], "gender": "female", "birthDate": "1970-05-01",
     "managingOrganization": {"reference": "Organization/o1"}},
    {"resourceType": "Patient", "id": "p2", "identifier": [{"system": "urn:mrn", "value": "M2"}],
     "name": [{"family": "Smith", "given": ["Bob"]}], "gender": "male", "birthDate": "1985"},
    {"resourceType": "Patient", "id": "p3", "identifier": [{"system": "urn:mrn", "value": "M3"}],
     "name": [{"family": "Dupont", "given": ["Chloé"]}], "gender": "female", "birthDate": "1990-12"},
]

STUDIES = [
    {"resourceType": "ResearchStudy", "id": "st1", "status": "active", "title": "Genetics of cancer",
     "identifier": [{"system": "urn:study", "value": "TRC-2024-017"}],
     "period": {"start": "2024-01-01", "end": "2025-12-31"}},
    {"resourceType": "ResearchStudy", "id": "st2", "status": "completed", "title": "Diabetes cohort",
     "identifier": [{"system": "urn:study", "value": "TRC-2023-001"}],
     "period": {"start": "2023-01-01", "end": "2023-12-31"}},
]

SUBJECTS = [
    {"resourceType": "ResearchSubject", "id": "rs1", "status": "on-study", "study": {"reference": "ResearchStudy/st1"},
     "individual": {"reference": "Patient/p1"}, "period": {"start": "2024-02-01"}},
    {"resourceType": "ResearchSubject", "id": "rs2", "status": "withdrawn", "study": {"reference": "ResearchStudy/st1"},
     "individual": {"reference": "Patient/p2"}},
    {"resourceType": "ResearchSubject", "id": "rs3", "status": "off-study", "study": {"reference": "ResearchStudy/st2"},
     "individual": {"reference": "Patient/p3"}},
]

CONSENTS = [
    {"resourceType": "Consent", "id": "c1", "status": "active", "patient": {"reference": "Patient/p1"},
     "dateTime": "2024-01-15", "provision": _permits("research", "genetic")},
    {"resourceType": "Consent", "id": "c2", "status": "inactive", "patient": {"reference": "Patient/p2"},
     "dateTime": "2023-05-02", "provision": _permits("research")},
    {"resourceType": "Consent", "id": "c3", "status": "active", "patient": {"reference": "Patient/p3"},
     "dateTime": "2022-11-20", "provision": _permits("research", "recontact"),
     "extension": [{"url": f"{BB}/StructureDefinition/consent-withdrawal",
                    "extension": [{"url": "scope", "valueCode": "NO_CONTACT"}]}]},
]

SPECIMENS = [
    {"resourceType": "Specimen", "id": "s1", "status": "available",
     "meta": {"tag": [{"system": "urn:tag", "code": "pilot"}], "profile": [f"{BB}/StructureDefinition/BiobankSpecimen"],
              "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]},
     "identifier": [{"system": "urn:biobank", "value": "S-001"}], "accessionIdentifier": {"value": "A1"},
     "subject": {"reference": "Patient/p1"},
     "type": {"coding": [{"system": SCT, "code": "119297000"}], "text": "Whole blood"},
     "collection": {"collectedDateTime": "2024-03-04T10:00:00Z"}, "container": _quantity(1.5, "mL"),
     "processing": [{"extension": [{"url": STORAGE, "valueCodeableConcept": {"coding": [
         {"system": MIABIS_TEMPERATURE, "code": "temperature-60to-85"}]}}]}],
     "extension": _genotyping(True, "GSA"),
     "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">blood</div>"}},
    {"resourceType": "Specimen", "id": "s2", "status": "available", "subject": {"reference": "Patient/p1"},
     "type": {"coding": [{"system": SCT, "code": "258566005", "display": "Deoxyribonucleic acid sample"}]},
     "parent": [{"reference": "Specimen/s1"}],
     "collection": {"collectedDateTime": "2024-03"}, "container": _quantity(0.5, "mL"),
     "extension": _genotyping(False)},
    {"resourceType": "Specimen", "id": "s3", "status": "unavailable", "subject": {"reference": "Patient/p2"},
     "type": {"coding": [{"system": SCT, "code": "119297000"}], "text": "Blood"},
     "collection": {"collectedPeriod": {"start": "2023-06-01", "end": "2023-06-03"}}, "container": _quantity(10, "mL")},
    {"resourceType": "Specimen", "id": "s4", "status": "available", "subject": {"reference": "Patient/p3"},
     "type": {"coding": [{"code": "SER"}], "text": "Serum"}, "collection": {"collectedDateTime": "2022-01-15"}},
    {"resourceType": "Specimen", "id": "s5", "status": "entered-in-error",
     "subject": {"reference": "Patient/p2", "identifier": {"system": "urn:mrn", "value": "M2"}},
     "type": {"coding": [{"system": SCT, "code": "258566005"}]},
     "collection": {"collectedDateTime": "2024-12-31T23:30:00+02:00"}, "container": _quantity(250, "uL")},
]

ALL = [ORGANIZATION, *PATIENTS, *STUDIES, *SUBJECTS, *CONSENTS, *SPECIMENS]
