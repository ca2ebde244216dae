"""batch and transaction Bundles (both engines)."""

from __future__ import annotations

import httpx

FHIR = {"Content-Type": "application/fhir+json"}


def tx_bundle(patients: int, specimens_each: int) -> dict:
    entries = []
    for p in range(patients):
        pid = f"urn:uuid:00000000-0000-0000-0000-{p:012d}"
        entries.append({"fullUrl": pid, "resource": {"resourceType": "Patient", "active": True},
                        "request": {"method": "POST", "url": "Patient"}})
        for s in range(specimens_each):
            entries.append({"resource": {"resourceType": "Specimen", "status": "available",
                                         "subject": {"reference": pid}, "note": [{"text": f"{p}-{s}"}]},
                            "request": {"method": "POST", "url": "Specimen"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def count_versions(client: httpx.AsyncClient, type_: str) -> int:
    return (await client.get(f"/fhir/{type_}/_history?_count=0")).json()["total"]


async def test_transaction_of_1000_entries_resolves_urn_uuid_references(app_client: httpx.AsyncClient) -> None:
    r = await app_client.post("/fhir", json=tx_bundle(200, 4), headers=FHIR)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    assert len(out["entry"]) == 1000
    assert all(e["response"]["status"] == "201 Created" for e in out["entry"])
    patient_ids = {e["resource"]["id"] for e in out["entry"] if e["resource"]["resourceType"] == "Patient"}
    refs = {e["resource"]["subject"]["reference"] for e in out["entry"] if e["resource"]["resourceType"] == "Specimen"}
    assert refs == {f"Patient/{pid}" for pid in patient_ids}
    first_specimen = out["entry"][1]["response"]["location"].split("/_history")[0]
    stored = (await app_client.get(f"/fhir/{first_specimen}")).json()
    assert stored["subject"]["reference"].removeprefix("Patient/") in patient_ids
    assert await count_versions(app_client, "Specimen") == 800


async def test_one_invalid_entry_fails_the_whole_transaction(app_client: httpx.AsyncClient) -> None:
    bundle = tx_bundle(100, 4)
    bundle["entry"][377]["resource"]["status"] = ["not", "a", "code"]
    r = await app_client.post("/fhir", json=bundle, headers=FHIR)
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["expression"][0] == "Bundle.entry[377]"
    assert "Bundle.entry[377]" in issue["diagnostics"]
    assert await count_versions(app_client, "Specimen") == 0
    assert await count_versions(app_client, "Patient") == 0


async def test_transaction_order_delete_post_put_get(app_client: httpx.AsyncClient) -> None:
    await app_client.put("/fhir/Patient/old", json={"resourceType": "Patient", "id": "old"}, headers=FHIR)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Patient/new"}},
        {"resource": {"resourceType": "Patient", "id": "new", "active": True},
         "request": {"method": "PUT", "url": "Patient/new"}},
        {"request": {"method": "DELETE", "url": "Patient/old"}},
    ]}
    r = await app_client.post("/fhir", json=bundle, headers=FHIR)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["200 OK", "201 Created", "204 No Content"]
    assert r.json()["entry"][0]["resource"]["active"] is True
    assert (await app_client.get("/fhir/Patient/old")).status_code == 410


async def test_batch_answers_each_entry_on_its_own(app_client: httpx.AsyncClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "id": "a"}, "request": {"method": "PUT", "url": "Patient/a"}},
        {"resource": {"resourceType": "Patient", "bogus": 1}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/zzz"}},
        {"request": {"method": "GET", "url": "Patient/a"}},
    ]}
    r = await app_client.post("/fhir", json=bundle, headers=FHIR)
    assert r.status_code == 200
    out = r.json()
    assert out["type"] == "batch-response"
    assert [e["response"]["status"] for e in out["entry"]] == ["201 Created", "400", "404", "200 OK"]
    assert out["entry"][1]["response"]["outcome"]["issue"][0]["expression"][0] == "Bundle.entry[1]"
    assert (await app_client.get("/fhir/Patient/a")).status_code == 200


async def test_bundle_errors(app_client: httpx.AsyncClient) -> None:
    not_bundle = await app_client.post("/fhir", json={"resourceType": "Patient"}, headers=FHIR)
    assert not_bundle.status_code == 400
    wrong_type = await app_client.post("/fhir", json={"resourceType": "Bundle", "type": "collection"}, headers=FHIR)
    assert wrong_type.status_code == 400
    no_request = await app_client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction",
                                                      "entry": [{"resource": {"resourceType": "Patient"}}]},
                                       headers=FHIR)
    assert no_request.status_code == 400
    assert no_request.json()["issue"][0]["expression"][0] == "Bundle.entry[0]"
