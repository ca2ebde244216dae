"""A deterministic synthetic EHR: patients with MRNs, and their diagnoses, labs, vital signs,
medications, encounters, procedures, reports and allergies, shaped like a real EHR's FHIR
API answers (narrative with the patient's name and MRN, the EHR's own identifiers, references
to practitioners and encounters) so the proxy's rewriting and the gate are tested on the
things that must not leak.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

MRN_SYSTEM = "http://hospital.massgeneral.org/fhir/sid/mrn"
EHR_ID_SYSTEM = "urn:oid:1.2.840.114350.1.13.0.1.7.2.798268"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LOINC, SNOMED, ICD10, RXNORM = "http://loinc.org", "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm", \
    "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
TODAY = date(2026, 6, 30)

CONDITIONS = [
    ("E11.9", "44054006", "Type 2 diabetes mellitus"), ("I10", "38341003", "Essential hypertension"),
    ("E78.5", "55822004", "Hyperlipidemia"), ("J45.909", "195967001", "Asthma"),
    ("C50.911", "254837009", "Malignant neoplasm of breast"), ("N18.3", "433144002", "Chronic kidney disease stage 3"),
    ("F32.9", "35489007", "Major depressive disorder"), ("K21.9", "235595009", "Gastro-esophageal reflux disease"),
]
LABS = [  # LOINC, display, unit, low, high
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 11.5, 17.0),
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 65, 180),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.5, 2.2),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.5, 9.5),
    ("13457-7", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation", "mg/dL", 60, 190),
]
VITALS = [
    ("8867-4", "Heart rate", "/min", 52, 110), ("29463-7", "Body weight", "kg", 48, 130),
    ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 18, 41), ("8310-5", "Body temperature", "Cel", 36.1, 38.4),
]
MEDICATIONS = [("860975", "metformin 500 MG Oral Tablet"), ("314076", "lisinopril 10 MG Oral Tablet"),
               ("617312", "atorvastatin 20 MG Oral Tablet"), ("745679", "albuterol 90 MCG/ACTUAT inhaler"),
               ("310798", "hydrochlorothiazide 25 MG Oral Tablet"), ("312938", "sertraline 50 MG Oral Tablet")]
PROCEDURES = [("73761001", "Colonoscopy"), ("387713003", "Surgical procedure"), ("71651007", "Mammography")]
ALLERGIES = [("91936005", "Allergy to penicillin"), ("300913006", "Shellfish allergy"),
             ("418689008", "Allergy to grass pollen")]
FIRST = ["Maria", "James", "Linda", "Robert", "Aisha", "Wei", "Carlos", "Priya", "John", "Fatima"]
LAST = ["Garcia", "Smith", "Nguyen", "Johnson", "Okafor", "Chen", "Rossi", "Patel", "Murphy", "Haddad"]


def mrn(i: int) -> str:
    """The MRN of synthetic patient `i` (1-based); biobank fixtures use the same numbers."""
    return f"MGH-{7_300_000 + i * 37:07d}"


@dataclass
class Dataset:
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    patient_by_mrn: dict[str, str] = field(default_factory=dict)

    def add(self, resource: dict[str, Any]) -> None:
        self.resources.setdefault(resource["resourceType"], {})[resource["id"]] = resource

    def all_ids(self) -> set[str]:
        return {id_ for by_id in self.resources.values() for id_ in by_id}


class _Maker:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.practitioners = [self.id() for _ in range(12)]

    def id(self) -> str:
        return "e" + "".join(self.rng.choices(string.ascii_letters + string.digits, k=23))

    def day(self, years_back: int = 10) -> date:
        return TODAY - timedelta(days=self.rng.randrange(1, 365 * years_back))

    @staticmethod
    def narrative(text: str) -> dict[str, str]:
        return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{text}</div>'}

    def base(self, type_: str, patient: dict[str, Any], label: str) -> dict[str, Any]:
        id_ = self.id()
        name = patient["name"][0]["text"]
        return {
            "resourceType": type_, "id": id_,
            "meta": {"versionId": "1", "lastUpdated": "2026-06-01T08:00:00Z", "source": "#epic-prd"},
            "text": self.narrative(f"{label} for {name} (MRN {patient['identifier'][0]['value']})"),
            "identifier": [{"system": f"{EHR_ID_SYSTEM}.{type_}", "value": id_.upper()}],
        }

    def who(self) -> dict[str, str]:
        return {"reference": f"Practitioner/{self.rng.choice(self.practitioners)}", "display": "Dr. A. Attending"}


def build(patients: int, seed: int = 7) -> Dataset:
    """The EHR record of patients 1..`patients` (MRN `mrn(i)`)."""
    make, data = _Maker(seed), Dataset()
    for i in range(1, patients + 1):
        rng = make.rng
        first, last = rng.choice(FIRST), rng.choice(LAST)
        pid = make.id()
        patient = {
            "resourceType": "Patient", "id": pid, "meta": {"versionId": "1", "lastUpdated": "2026-06-01T08:00:00Z"},
            "identifier": [{"use": "usual", "system": MRN_SYSTEM, "value": mrn(i)},
                           {"system": EHR_ID_SYSTEM, "value": pid.upper()}],
            "name": [{"use": "official", "family": last, "given": [first], "text": f"{first} {last}"}],
            "gender": rng.choice(["female", "male"]), "birthDate": str(date(1940 + rng.randrange(60), 1 + i % 12, 3)),
            "address": [{"line": [f"{rng.randrange(1, 400)} Cambridge St"], "city": "Boston", "state": "MA"}],
        }
        patient["text"] = make.narrative(f"{first} {last}, MRN {mrn(i)}")
        data.add(patient)
        data.patient_by_mrn[mrn(i)] = pid
        ref = {"reference": f"Patient/{pid}", "display": f"{first} {last}"}
        encounters = []
        for _ in range(rng.randrange(2, 5)):
            enc = make.base("Encounter", patient, "Visit")
            day = make.day()
            enc.update({"status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                                        "code": rng.choice(["AMB", "IMP"])},
                        "subject": ref, "period": {"start": f"{day}T09:00:00Z", "end": f"{day}T11:30:00Z"},
                        "participant": [{"individual": make.who()}],
                        "serviceProvider": {"reference": "Organization/eMGH", "display": "MGH"}})
            data.add(enc)
            encounters.append(enc["id"])

        def at_visit() -> dict[str, str]:
            return {"reference": f"Encounter/{rng.choice(encounters)}"}  # noqa: B023

        for icd, sct, display in rng.sample(CONDITIONS, rng.randrange(1, 5)):
            cond = make.base("Condition", patient, display)
            onset = make.day()
            cond.update({
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                               "code": rng.choice(["active", "active", "resolved"])}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                   "condition-ver-status", "code": "confirmed"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                          "code": "problem-list-item"}]}],
                "code": {"coding": [{"system": ICD10, "code": icd, "display": display},
                                    {"system": SNOMED, "code": sct, "display": display}], "text": display},
                "subject": ref, "encounter": at_visit(), "onsetDateTime": str(onset), "recordedDate": str(onset),
                "asserter": make.who(), "note": [{"text": f"Discussed with {first} {last} at visit."}],
            })
            data.add(cond)
        observations = []
        for category, items in (("laboratory", LABS), ("vital-signs", VITALS)):
            for code, display, unit, low, high in items:
                for _ in range(rng.randrange(1, 3)):
                    obs = make.base("Observation", patient, display)
                    value = round(rng.uniform(low, high), 1)
                    obs.update({
                        "status": "final",
                        "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
                        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
                        "subject": ref, "encounter": at_visit(), "effectiveDateTime": f"{make.day(5)}T10:15:00Z",
                        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
                        "performer": [make.who()],
                    })
                    data.add(obs)
                    observations.append(obs["id"])
        for rx, display in rng.sample(MEDICATIONS, rng.randrange(1, 4)):
            med = make.base("MedicationRequest", patient, display)
            med.update({
                "status": rng.choice(["active", "completed"]), "intent": "order",
                "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rx, "display": display}]},
                "subject": ref, "encounter": at_visit(), "authoredOn": str(make.day()), "requester": make.who(),
                "dosageInstruction": [{"text": "Take 1 tablet by mouth daily"}],
            })
            data.add(med)
        for sct, display in rng.sample(PROCEDURES, rng.randrange(0, 2)):
            proc = make.base("Procedure", patient, display)
            proc.update({"status": "completed", "code": {"coding": [{"system": SNOMED, "code": sct,
                                                                     "display": display}]},
                         "subject": ref, "performedDateTime": str(make.day()), "performer": [{"actor": make.who()}]})
            data.add(proc)
        report = make.base("DiagnosticReport", patient, "Basic metabolic panel")
        report.update({"status": "final", "category": [{"coding": [{"system": "http://terminology.hl7.org/"
                                                                    "CodeSystem/v2-0074", "code": "LAB"}]}],
                       "code": {"coding": [{"system": LOINC, "code": "51990-0", "display": "Basic metabolic panel"}]},
                       "subject": ref, "effectiveDateTime": f"{make.day(3)}T10:15:00Z",
                       "result": [{"reference": f"Observation/{r}"} for r in observations[:3]],
                       "performer": [make.who()]})
        data.add(report)
        for sct, display in rng.sample(ALLERGIES, rng.randrange(0, 2)):
            allergy = make.base("AllergyIntolerance", patient, display)
            allergy.update({"clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                           "allergyintolerance-clinical", "code": "active"}]},
                            "code": {"coding": [{"system": SNOMED, "code": sct, "display": display}]},
                            "patient": ref, "recorder": make.who()})
            data.add(allergy)
    return data
