"""A small biobank in FHIR form covering every consent state, for the access tests."""

from __future__ import annotations

from typing import Any

B = "https://biobank.massgeneral.org/fhir"
MRN = "http://hospital.massgeneral.org/fhir/sid/mrn"
ALL = ("research", "genetic", "ehr-linkage", "recontact", "external-sharing", "commercial")
SHARE = ("research", "external-sharing")


def consent(cid: str, patient: str, status: str, permits: tuple[str, ...], signed: str = "2020-01-01",
            expires: str | None = None, withdrawal: tuple[str, str] | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Consent", "id": cid,
        "extension": [{"url": f"{B}/StructureDefinition/source-status",
                       "valueCoding": {"system": f"{B}/CodeSystem/consent-status", "code": status}}],
        "status": "active" if status == "ACTIVE" else "inactive",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "57016-8"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "dateTime": signed,
        "policy": [{"uri": f"{B}/consent-form/BIOBANK-v3.2"}],
        "provision": {"type": "permit", "provision": [
            {"type": "permit" if kind in permits else "deny",
             "purpose": [{"system": f"{B}/CodeSystem/consent-permission", "code": kind}]} for kind in ALL]},
    }
    if expires:
        resource["provision"]["period"] = {"end": expires}
    if withdrawal:
        scope, date = withdrawal
        resource["extension"].append({"url": f"{B}/StructureDefinition/consent-withdrawal", "extension": [
            {"url": "scope", "valueCoding": {"system": f"{B}/CodeSystem/withdrawal-scope", "code": scope}},
            {"url": "date", "valueDateTime": date}]})
    return resource


def patient(pid: str, mrn: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "birthDate": "1961-07-14",
            "identifier": [{"system": f"{B}/sid/subject", "value": pid}, {"system": MRN, "value": mrn}]}


PLASMA = {"system": "http://snomed.info/sct", "code": "119361006"}
DNA = {"system": "http://snomed.info/sct", "code": "258566005"}


def specimen(sid: str, pid: str, genotyped: bool, kind: dict[str, str]) -> dict[str, Any]:
    ext: list[dict[str, Any]] = [{"url": f"{B}/StructureDefinition/storage-location", "valueString": "F1/R2/B3/A4"}]
    if genotyped:
        ext.append({"url": f"{B}/StructureDefinition/genotyping", "extension": [
            {"url": "genotyped", "valueBoolean": True},
            {"url": "platform", "valueCoding": {"system": f"{B}/CodeSystem/genotyping-platform", "code": "MEGA"}}]})
    return {"resourceType": "Specimen", "id": sid, "extension": ext, "status": "available",
            "identifier": [{"system": f"{B}/sid/specimen", "value": f"BB-{sid}"}],
            "type": {"coding": [kind]}, "subject": {"reference": f"Patient/{pid}"},
            "note": [{"text": "drawn by nurse J. Smith"}],
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">MGH-1234567</div>"}}


# subject -> its consents; the expected visibility is in the tests, written by hand.
SUBJECTS: dict[str, list[dict[str, Any]]] = {
    "S01": [consent("C01", "S01", "ACTIVE", ALL)],
    "S02": [consent("C02", "S02", "ACTIVE", SHARE)],
    "S03": [consent("C03", "S03", "ACTIVE", ("research", "genetic"))],
    "S04": [consent("C04", "S04", "WITHDRAWN", ALL, withdrawal=("NO_FURTHER_USE", "2024-05-01"))],
    "S05": [consent("C05", "S05", "WITHDRAWN", ALL, withdrawal=("DESTROY", "2024-05-01"))],
    "S06": [consent("C06", "S06", "WITHDRAWN", ALL, withdrawal=("NO_CONTACT", "2024-05-01"))],
    "S07": [consent("C07", "S07", "EXPIRED", ALL)],
    "S08": [consent("C08", "S08", "ACTIVE", ALL, expires="2021-12-31")],
    "S09": [],
    "S10": [consent("C10a", "S10", "SUPERSEDED", ALL, signed="2018-01-01"),
            consent("C10b", "S10", "ACTIVE", ("research",), signed="2022-01-01")],
    "S11": [consent("C11a", "S11", "ACTIVE", ("research",), signed="2018-01-01"),
            consent("C11b", "S11", "ACTIVE", (*SHARE, "genetic"), signed="2023-03-01")],
    "S12": [consent("C12", "S12", "WITHDRAWN", SHARE, withdrawal=("NO_FURTHER_USE", "2099-01-01"))],
}


def resources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for n, (pid, consents) in enumerate(SUBJECTS.items()):
        out.append(patient(pid, f"MGH-{7000000 + n}"))
        out.append(specimen(f"SP{pid}", pid, genotyped=True, kind=PLASMA if n < 6 else DNA))
        out.extend(consents)
    out.append({"resourceType": "ResearchStudy", "id": "TRC-2024-017", "status": "active"})
    out.append({"resourceType": "Group", "id": "cohort", "type": "person", "actual": True, "quantity": 12,
                "member": [{"entity": {"reference": f"Patient/{pid}"}} for pid in SUBJECTS]})
    return out
