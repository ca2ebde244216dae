"""What collaborators (external principals) get from the EHR: consenting donors only,
pseudonymised, and nothing that names the hospital's systems — plus `$ehr-summary`."""

from __future__ import annotations

import json

from tests.ehr.conftest import DONORS, EXTERNAL, EXTERNAL_LABS, INTERNAL, MRN_SYSTEM, Gateway, ehr_ids_of
from tests.ehr.upstream.data import EHR_ID_SYSTEM, Dataset, mrn

PROXIED = ("Condition", "Observation", "MedicationRequest", "Encounter", "Procedure", "DiagnosticReport",
           "AllergyIntolerance")


def assert_private(text: str, dataset: Dataset) -> None:
    """No upstream URL, EHR id, MRN (system or value) or EHR identifier system in `text`."""
    assert "ehr.test" not in text
    assert MRN_SYSTEM not in text and "MGH-" not in text and EHR_ID_SYSTEM not in text
    for id_ in dataset.all_ids():
        assert id_ not in text, f"EHR id {id_} leaked"


async def test_collaborators_get_pseudonymised_resources_of_consenting_donors(
        gateway: Gateway, dataset: Dataset) -> None:
    r = await gateway.as_(EXTERNAL).client.get("/fhir/Condition", params={"patient": "Patient/S1"})
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    ehr_patient = dataset.patient_by_mrn[mrn(1)]
    originals = [c for c in dataset.resources["Condition"].values()
                 if c["subject"]["reference"] == f"Patient/{ehr_patient}"]
    assert len(entries) == len(originals) > 0
    for entry in entries:
        resource = entry["resource"]
        assert resource["subject"] == {"reference": "Patient/S1"}
        assert "identifier" not in resource and "text" not in resource and "asserter" not in resource
        assert "PSEUDED" in json.dumps(resource["meta"].get("security"))
        assert entry["fullUrl"] == f"http://testserver/fhir/Condition/{resource['id']}"
        assert resource["code"] in [c["code"] for c in originals]
        assert resource["onsetDateTime"] in [c["onsetDateTime"] for c in originals]  # dates kept
    assert_private(r.text, dataset)


async def test_gateway_ids_are_stable_and_readable_by_collaborators_only(gateway: Gateway) -> None:
    client = gateway.as_(EXTERNAL).client
    first = await client.get("/fhir/Condition", params={"patient": "S1"}, headers={"Cache-Control": "no-cache"})
    again = await client.get("/fhir/Condition", params={"patient": "S1"}, headers={"Cache-Control": "no-cache"})
    ids = [e["resource"]["id"] for e in first.json()["entry"]]
    assert ids == [e["resource"]["id"] for e in again.json()["entry"]]
    read = await client.get(f"/fhir/Condition/{ids[0]}")
    assert read.status_code == 200 and read.json()["id"] == ids[0]
    assert read.json()["subject"] == {"reference": "Patient/S1"}
    assert (await client.get("/fhir/Condition/not-a-gateway-id")).status_code == 404
    assert (await gateway.as_(INTERNAL).client.get(f"/fhir/Condition/{ids[0]}")).status_code == 404


async def test_donors_without_ehr_consent_or_sharing_consent_are_not_disclosed(
        gateway: Gateway) -> None:
    for subject in ("S2", "S3", "S6"):  # no EHR linkage; withdrawn; no external sharing
        r = await gateway.as_(EXTERNAL).client.get("/fhir/Condition", params={"patient": subject})
        assert r.status_code == 200 and r.json()["entry"] == [], subject
        internal = await gateway.as_(INTERNAL).client.get("/fhir/Condition", params={"patient": subject})
        assert internal.json()["entry"], f"{subject} has EHR conditions the internal principal sees"


async def test_granular_scopes_limit_observations_to_laboratory(gateway: Gateway) -> None:
    r = await gateway.as_(EXTERNAL_LABS).client.get("/fhir/Observation", params={"patient": "S1", "_count": "100"})
    categories = {e["resource"]["category"][0]["coding"][0]["code"] for e in r.json()["entry"]}
    assert categories == {"laboratory"}


async def test_privacy_scan_over_everything_a_collaborator_can_reach(gateway: Gateway, dataset: Dataset) -> None:
    client = gateway.as_(EXTERNAL).client
    texts = []
    for subject in DONORS:
        for type_ in PROXIED:
            url: str | None = f"/fhir/{type_}?patient={subject}&_count=3"
            while url:
                r = await client.get(url)
                assert r.status_code == 200, r.text
                texts.append(r.text)
                for entry in r.json()["entry"]:
                    read = await client.get(f"/fhir/{type_}/{entry['resource']['id']}")
                    texts.append(read.text)
                url = next((link["url"].removeprefix("http://testserver") for link in r.json()["link"]
                            if link["relation"] == "next"), None)
        summary = await client.get(f"/fhir/Patient/{subject}/$ehr-summary")
        texts.append(summary.text)
    assert sum(t.count('"resourceType":"Condition"') for t in texts) > 0
    for text in texts:
        assert_private(text, dataset)
    assert ehr_ids_of(dataset, mrn(1)) <= dataset.all_ids()


async def test_ehr_summary_bundles_conditions_observations_and_medications(gateway: Gateway,
                                                                          dataset: Dataset) -> None:
    r = await gateway.as_(INTERNAL).client.get("/fhir/Patient/S1/$ehr-summary")
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["type"] == "collection"
    ehr_patient = dataset.patient_by_mrn[mrn(1)]
    for type_ in ("Condition", "Observation", "MedicationRequest"):
        expected = {x["id"] for x in dataset.resources[type_].values()
                    if x["subject"]["reference"] == f"Patient/{ehr_patient}"}
        assert {e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == type_} == expected
    external = await gateway.as_(EXTERNAL).client.get("/fhir/Patient/S1/$ehr-summary")
    assert len(external.json()["entry"]) == len(bundle["entry"])
    assert_private(external.text, dataset)
    withdrawn = await gateway.as_(EXTERNAL).client.get("/fhir/Patient/S3/$ehr-summary")
    assert withdrawn.status_code == 404
    assert (await gateway.as_(INTERNAL).client.get("/fhir/Patient/nobody/$ehr-summary")).status_code == 404
