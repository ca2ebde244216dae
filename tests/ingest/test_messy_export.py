"""The hand-written messy export (data/messy) loaded from every source kind into SQLite and
PostgreSQL stores: every reject rule of source-export.md, every transform, and the FHIR
content field by field, as the profiles (profiles/README.md) define it."""

from __future__ import annotations

from collections import Counter

import pytest

from gateway.ingest import load
from tests.ingest.conftest import make_source, make_store, read

B = "https://biobank.massgeneral.org/fhir"

# record id -> the reason its row is refused (a substring); two entries where both duplicates go.
REJECTS = {
    ("studies", "TRC-2024-900"): "missing required title",
    ("studies", "TRC-2024-901"): "unknown phase code '3B'",
    ("studies", "TRC-2024-902"): "unknown status code 'ON_HOLD'",
    ("studies", "TRC-2024-903"): "start_date: invalid date '2024-13-01'",
    ("consents", "C0000004-1"): "missing required withdrawn_date",
    ("consents", "C0000005-1"): "missing required withdrawal_scope",
    ("consents", "C0000006-1"): "permits_genetic: invalid boolean 'maybe'",
    ("consents", "C0000007-1"): "missing required permits_genetic",
    ("consents", "C0000008-1"): "unknown status code 'REVOKED'",
    ("consents", "C0000009-1"): "duplicate consent_id C0000009-1",
    ("consents", "C0000010-1"): "missing required updated_at",
    ("specimens", "BB-0000099-01"): "unknown parent specimen BB-0000404-01",
    ("specimens", "BB-0000100-01"): "unknown specimen_type code 'XYZ'",
    ("specimens", "BB-0000101-01"): "missing required collection_datetime",
    ("specimens", "BB-0000102-01"): "collection_datetime 2099-01-01T09:00:00 is in the future",
    ("specimens", "BB-0000103-01"): "collection_datetime: invalid date '2019-02-30'",
    ("specimens", "BB-0000104-01"): "unrecognised date 'March 5 2019'",
    ("specimens", "BB-0000105-01"): "quantity_value -1 is below 0",
    ("specimens", "BB-0000106-01"): "missing required status",
    ("specimens", "BB-0000107-01"): "duplicate specimen_id BB-0000107-01",
    ("specimens", "BB-0000108-01"): "unknown parent specimen BB-0000102-01 (rejected in this load)",
    ("specimens", "BB-0000109-01"): "missing required quantity_unit",
    ("specimens", "BB-0000110-01"): "22 cells but the header has 21",
    ("specimens", "BB-0000111-01"): "unknown quantity_unit code 'gallon'",
    ("specimens", "BB-0000112-01"): "unknown storage_temperature code '-70'",
    ("participants", "E0000005"): "unknown study TRC-1999-000",
    ("participants", "E0000006"): "unknown consent C9999999-9",
    ("participants", "E0000007"): "unknown study TRC-2024-900 (rejected in this load)",
    ("participants", "E0000008"): "unknown status code 'SCREENED'",
    ("participants", "E0000009"): "unknown consent C0000004-1 (rejected in this load)",
}
DUPLICATED = {("consents", "C0000009-1"), ("specimens", "BB-0000107-01")}
CSV_ONLY = {("specimens", "BB-0000110-01")}  # a ragged row exists only in CSV
READ = {"studies": 7, "consents": 12, "specimens": 20, "participants": 9}

COMBINATIONS = [("csv", "sqlite"), ("ndjson", "sqlite"), ("sqlite", "sqlite"), ("postgresql", "sqlite"),
                ("csv", "postgresql"), ("postgresql", "postgresql")]


@pytest.fixture(scope="module", params=COMBINATIONS, ids=[f"{s}-to-{t}" for s, t in COMBINATIONS])
async def loaded(request, tmp_path_factory, pg_databases):
    source_kind, store_kind = request.param
    tmp = tmp_path_factory.mktemp(f"{source_kind}-{store_kind}")
    store = await make_store(store_kind, tmp, pg_databases)
    source = await make_source(source_kind, tmp, pg_databases)
    report = await load(store, source, report_path=tmp / "report.json")
    yield source_kind, store, report, source, tmp
    await store.close()


def expected_rejects(source_kind: str) -> Counter:
    out = Counter()
    for key in REJECTS:
        if source_kind != "csv" and key in CSV_ONLY:
            continue
        out[key] += 2 if key in DUPLICATED else 1
    return out


async def test_every_reject_rule_refuses_its_row_with_the_reason(loaded):
    source_kind, _, report, _, _ = loaded
    got = Counter((r.record_set, r.record_id) for r in report.rejects)
    assert got == expected_rejects(source_kind)
    for r in report.rejects:
        assert REJECTS[(r.record_set, r.record_id)] in r.reason
        assert r.line is not None and r.file


async def test_counts_reconcile_and_match_the_rows(loaded):
    source_kind, _, report, _, _ = loaded
    assert report.reconciled
    for name, counts in report.record_sets.items():
        ragged = 1 if name == "specimens" and source_kind != "csv" else 0
        assert counts.read == READ[name] - ragged
        rejected = sum(n for (rs, _), n in expected_rejects(source_kind).items() if rs == name)
        assert (counts.created, counts.rejected) == (READ[name] - ragged - rejected, rejected)


async def test_csv_reject_lines_are_file_lines(loaded):
    source_kind, _, report, _, _ = loaded
    if source_kind != "csv":
        pytest.skip("line numbers are CSV lines only for the CSV source")
    lines = {(r.record_set, r.record_id): r.line for r in report.rejects}
    assert lines[("studies", "TRC-2024-900")] == 5
    assert lines[("specimens", "BB-0000110-01")] == 19
    assert sorted(r.line for r in report.rejects if r.record_id == "BB-0000107-01") == [15, 16]
    assert {r.file for r in report.rejects if r.record_set == "consents"} == {"consents.csv"}


async def test_unknown_columns_are_reported_once(loaded):
    _source_kind, _, report, _, _ = loaded
    unknown = [w for w in report.warnings if "unknown columns" in w]
    assert len([w for w in unknown if "lims_batch" in w]) == 1
    assert len([w for w in unknown if "registry_note" in w]) == 1


async def test_primary_specimen_field_by_field(loaded):
    _, store, _, _, _ = loaded
    wb = await read(store, "Specimen", "BB-0000001-01")
    assert wb["meta"]["profile"] == [f"{B}/StructureDefinition/BiobankSpecimen"]
    assert wb["identifier"] == [
        {"system": f"{B}/sid/specimen", "value": "BB-0000001-01"},
        {"system": f"{B}/sid/container", "value": "FR0000000001"},
    ]
    assert wb["status"] == "unavailable"
    assert {"url": f"{B}/StructureDefinition/source-status",
            "valueCoding": {"system": f"{B}/CodeSystem/specimen-status", "code": "DEPLETED"}} in wb["extension"]
    assert wb["type"]["coding"] == [
        {"system": "http://snomed.info/sct", "code": "119297000", "display": "Blood specimen"},
        {"system": "http://terminology.hl7.org/CodeSystem/v2-0487", "code": "BLD", "display": "Whole blood"},
        {"system": f"{B}/CodeSystem/specimen-type", "code": "WB"},
    ]
    assert wb["subject"] == {"reference": "Patient/S0000001"}
    assert wb["collection"]["collectedDateTime"] == "2021-09-02T08:15:00-04:00"  # local time, New York (EDT)
    assert wb["receivedTime"] == "2021-09-02T10:30:00-04:00"
    assert wb["collection"]["method"]["coding"][0] == {"system": "http://snomed.info/sct", "code": "28520004",
                                                       "display": "Venipuncture"}
    assert wb["collection"]["bodySite"] == {"text": "left arm"}
    assert wb["container"] == [{"type": {"text": "EDTA tube 10 mL"},
                                "specimenQuantity": {"value": 10, "unit": "mL", "system": "http://unitsofmeasure.org",
                                                     "code": "mL"}}]
    storage = wb["processing"][0]["extension"][0]
    assert storage["url"] == "https://fhir.bbmri-eric.eu/fhir/StructureDefinition/miabis-sample-storage-temperature-extension"
    assert storage["valueCodeableConcept"]["coding"][0]["code"] == "2to10"
    assert {"url": f"{B}/StructureDefinition/storage-location", "valueString": "REF-01/R1/B001/A1"} in wb["extension"]
    assert "parent" not in wb and "mrn" not in str(wb).lower()


async def test_aliquots_and_derivatives(loaded):
    _, store, _, _, _ = loaded
    plasma = await read(store, "Specimen", "BB-0000001-02")  # written before its parent in the file
    assert plasma["parent"] == [{"reference": "Specimen/BB-0000001-01"}]
    assert plasma["type"]["coding"][0]["code"] == "119361006"
    assert plasma["type"]["coding"][2]["code"] == "PLS"  # `pls` in the file
    assert plasma["container"][0]["specimenQuantity"]["code"] == "mL"  # `ml` in the file
    assert plasma["container"][0]["specimenQuantity"]["value"] == 0.5
    assert plasma["collection"]["collectedDateTime"] == "2021-09-02T08:15:00-04:00"  # inherited from the draw
    dna = await read(store, "Specimen", "BB-0000001-03")  # grandchild: DNA from the plasma
    assert dna["parent"] == [{"reference": "Specimen/BB-0000001-02"}]
    assert dna["collection"]["collectedDateTime"] == "2021-09-02T08:15:00-04:00"
    genotyping = next(e for e in dna["extension"] if e["url"] == f"{B}/StructureDefinition/genotyping")
    assert genotyping["extension"] == [
        {"url": "genotyped", "valueBoolean": True},
        {"url": "platform", "valueCoding": {"system": f"{B}/CodeSystem/genotyping-platform", "code": "GSA-24v3"}},
    ]
    concentration = next(e for e in dna["extension"] if e["url"].endswith("nucleic-acid-concentration"))
    assert concentration["valueQuantity"] == {"value": 48.2, "unit": "ng/uL", "system": "http://unitsofmeasure.org",
                                              "code": "ng/uL"}


async def test_tissue_and_saliva_transforms(loaded):
    _, store, _, _, _ = loaded
    block = await read(store, "Specimen", "BB-0000002-01")
    assert block["container"][0]["specimenQuantity"] == {"value": 1, "unit": "{block}",
                                                          "system": "http://unitsofmeasure.org", "code": "{block}"}
    assert block["collection"]["collectedDateTime"] == "2022-01-11"  # a date stays a date
    assert block["status"] == "unavailable"  # RESERVED
    assert next(e for e in block["extension"] if e["url"].endswith("/genotyping"))["extension"] == [
        {"url": "genotyped", "valueBoolean": False}]
    assert len(block["identifier"]) == 1  # no barcode
    saliva = await read(store, "Specimen", "BB-0000003-01")
    assert saliva["collection"]["collectedDateTime"] == "2022-02-10T14:20:00-05:00"  # legacy MM/DD/YYYY HH:MM, EST
    assert saliva["collection"]["method"]["coding"] == [{"system": f"{B}/CodeSystem/collection-method", "code": "SPIT"}]
    assert saliva["status"] == "unsatisfactory"
    temperature = saliva["processing"][0]["extension"][0]["valueCodeableConcept"]["coding"]
    assert [c["code"] for c in temperature] == ["LN", "LN2"]


async def test_consent_provisions_and_withdrawal(loaded):
    _, store, _, _, _ = loaded
    consent = await read(store, "Consent", "C0000001-2")
    assert consent["meta"]["profile"] == [f"{B}/StructureDefinition/BiobankConsent"]
    assert consent["status"] == "active"
    assert consent["patient"] == {"reference": "Patient/S0000001"}
    assert consent["dateTime"] == "2021-09-01"  # legacy 09/01/2021
    assert consent["policy"] == [{"uri": f"{B}/consent-form/BIOBANK-v3.2"}]
    assert consent["scope"]["coding"][0]["code"] == "research"
    assert consent["category"][0]["coding"][0]["code"] == "57016-8"
    provision = consent["provision"]
    assert provision["type"] == "permit"
    assert provision["period"] == {"start": "2021-09-01", "end": "2031-09-01"}
    decided = {p["purpose"][0]["code"]: p["type"] for p in provision["provision"]}
    assert decided == {"research": "permit", "genetic": "deny", "ehr-linkage": "permit", "recontact": "deny",
                       "external-sharing": "permit", "commercial": "deny"}
    research = provision["provision"][0]["purpose"]
    assert research[1] == {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH",
                           "display": "healthcare research"}
    empty_commercial = await read(store, "Consent", "C0000001-1")
    by_kind = {p["purpose"][0]["code"]: p["type"] for p in empty_commercial["provision"]["provision"]}
    assert by_kind["commercial"] == "deny"
    withdrawn = await read(store, "Consent", "C0000002-1")  # `withdrawn`, `destroy` in lower case
    assert withdrawn["status"] == "inactive"
    withdrawal = next(e for e in withdrawn["extension"] if e["url"].endswith("/consent-withdrawal"))
    assert withdrawal["extension"] == [
        {"url": "scope", "valueCoding": {"system": f"{B}/CodeSystem/withdrawal-scope", "code": "DESTROY",
                                         "display": "Destroy samples and data"}},
        {"url": "date", "valueDateTime": "2023-05-01T16:30:00-04:00"},
    ]
    expired = await read(store, "Consent", "C0000003-1")
    assert expired["status"] == "inactive" and expired["provision"]["period"]["end"] == "2024-02-10"


async def test_studies_organisations_and_practitioners(loaded):
    _, store, _, _, _ = loaded
    study = await read(store, "ResearchStudy", "TRC-2024-017")
    assert study["identifier"] == [{"system": f"{B}/sid/study", "value": "TRC-2024-017"},
                                   {"system": f"{B}/sid/irb-protocol", "value": "2024P000123"}]
    assert study["status"] == "active"
    assert study["phase"]["coding"] == [
        {"system": "http://terminology.hl7.org/CodeSystem/research-study-phase", "code": "early-phase-1",
         "display": "Early Phase 1"},
        {"system": f"{B}/CodeSystem/study-phase", "code": "0"},
    ]
    assert study["category"][0]["coding"][0]["code"] == "INTERVENTIONAL"
    assert study["condition"] == [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": c}]}
                                  for c in ("C34.90", "C18.9")]
    assert study["keyword"] == [{"text": "first-in-human"}, {"text": "dose escalation"}]
    assert study["principalInvestigator"] == {"reference": "Practitioner/pi-elena-marquez-md",
                                              "display": "Elena Marquez, MD"}
    assert study["sponsor"] == {"reference": "Organization/org-novagen-therapeutics", "display": "Novagen Therapeutics"}
    assert study["site"] == [{"display": "Translational Research Center"}]
    assert study["enrollment"] == [{"reference": "Group/cohort-TRC-2024-017"}]
    assert (await read(store, "Practitioner", "pi-elena-marquez-md"))["name"] == [{"text": "Elena Marquez, MD"}]
    assert (await read(store, "Organization", "org-translational-research-center"))["name"] == \
        "Translational Research Center"
    distribution = await read(store, "ResearchStudy", "BB-DIST-2023-112")  # `active`, `biobank_distribution`
    assert distribution["status"] == "active"
    assert distribution["period"] == {"start": "2023-03-01", "end": "2025-12-31"}
    assert distribution["category"][0]["coding"][0]["code"] == "BIOBANK_DISTRIBUTION"
    phase_2b = await read(store, "ResearchStudy", "TRC-2022-005")
    assert [c["code"] for c in phase_2b["phase"]["coding"]] == ["phase-2", "2B"]


async def test_participants_patients_and_cohorts(loaded):
    _, store, _, _, _ = loaded
    subject = await read(store, "ResearchSubject", "E0000001")
    assert subject["status"] == "on-study"
    assert subject["study"] == {"reference": "ResearchStudy/TRC-2024-017"}
    assert subject["individual"] == {"reference": "Patient/S0000001"}
    assert subject["consent"] == {"reference": "Consent/C0000001-2"}
    assert subject["assignedArm"] == "Dose level 1"
    assert (await read(store, "ResearchSubject", "E0000003"))["status"] == "off-study"  # `completed`
    patient = await read(store, "Patient", "S0000001")
    assert patient["identifier"] == [{"system": f"{B}/sid/subject", "value": "S0000001"},
                                     {"system": "http://hospital.massgeneral.org/fhir/sid/mrn", "value": "MGH-7654321"}]
    assert patient["meta"]["profile"] == [f"{B}/StructureDefinition/BiobankPatient"]
    only_enrolled = await read(store, "Patient", "S0000011")
    assert only_enrolled["identifier"] == [{"system": f"{B}/sid/subject", "value": "S0000011"}]
    cohort = await read(store, "Group", "cohort-TRC-2024-017")
    assert cohort["type"] == "person" and cohort["actual"] is True
    assert [m["entity"]["reference"] for m in cohort["member"]] == ["Patient/S0000001", "Patient/S0000011"]
    assert cohort["quantity"] == 2  # S0000002 withdrew: not a member
    assert cohort["characteristic"][0]["valueReference"] == {"reference": "ResearchStudy/TRC-2024-017"}
    closed = await read(store, "Group", "cohort-BB-DIST-2023-112")
    assert closed["member"] == [{"entity": {"reference": "Patient/S0000003"},
                                 "period": {"start": "2023-03-02", "end": "2023-06-30"}, "inactive": True}]


async def test_one_provenance_targets_everything_loaded(loaded):
    _, store, report, _, _ = loaded
    assert len(report.provenance) == 1  # a small load: one part
    provenance = await read(store, "Provenance", report.provenance[0].split("/")[1])
    targets = {t["reference"] for t in provenance["target"]}
    assert {"Specimen/BB-0000001-01", "Patient/S0000011", "Group/cohort-TRC-2024-017"} <= targets
    assert "Specimen/BB-0000100-01" not in targets
    assert report.resources["Provenance"]["created"] == 1


async def test_reloading_the_same_export_changes_nothing(loaded):
    _, store, _, source, _tmp = loaded
    again = await load(store, source)
    assert again.reconciled
    for name, counts in again.record_sets.items():
        assert counts.created == counts.updated == 0, name
    assert all(by["created"] == by["updated"] == 0 for by in again.resources.values())
    assert (await store.read("Specimen", "BB-0000001-01")).version == 1

