"""Real tokens against the read, vread, history and batch paths: what a scope does not grant
never leaves, by any of these doors, and is not counted either. (Search side doors —
_include, _revinclude, _has, chains — are tested with the search engine.)"""

from __future__ import annotations

from typing import Any

from tests.auth.conftest import Gateway


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {e["fullUrl"].rsplit("/", 2)[-2] + "/" + e["fullUrl"].rsplit("/", 1)[-1] for e in bundle.get("entry", [])
            if "fullUrl" in e}


async def _batch(gateway: Gateway, token: str, *urls: str) -> list[str]:
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"request": {"method": "GET", "url": url}} for url in urls]}
    r = await gateway.http.post("/fhir", json=bundle, headers={"Authorization": f"Bearer {token}",
                                                               "Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    assert "Consent" not in str([e.get("resource") for e in r.json()["entry"]])
    return [e["response"]["status"] for e in r.json()["entry"]]


async def test_specimen_token_cannot_read_consent_by_read_vread_or_history(gateway: Gateway) -> None:
    token = await gateway.system_token("system/Specimen.rs")
    assert (await gateway.get("/fhir/Specimen/s1", token)).status_code == 200
    for path in ("/fhir/Consent/c1", "/fhir/Consent/c1/_history/1", "/fhir/Consent/c1/_history",
                 "/fhir/Consent/_history"):
        r = await gateway.get(path, token)
        assert r.status_code == 403, path
        assert "Patient/p1" not in r.text


async def test_specimen_token_whole_system_history_lists_and_counts_specimens_only(gateway: Gateway) -> None:
    token = await gateway.system_token("system/Specimen.rs")
    bundle = (await gateway.get("/fhir/_history", token)).json()
    assert _ids(bundle) == {"Specimen/s1", "Specimen/s2"}
    assert bundle["total"] == 2


async def test_specimen_token_batch_get_of_a_consent_is_refused_per_entry(gateway: Gateway) -> None:
    token = await gateway.system_token("system/Specimen.rs")
    statuses = await _batch(gateway, token, "Specimen/s1", "Consent/c1")
    assert statuses[0].startswith("200")
    assert statuses[1].startswith("403")


async def test_patient_token_cannot_reach_another_subjects_specimen_by_id(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    token = (await gateway.launch_tokens(client_id, patient="p1"))["access_token"]
    assert (await gateway.get("/fhir/Specimen/s1", token)).status_code == 200
    for path in ("/fhir/Specimen/s2", "/fhir/Specimen/s2/_history/1", "/fhir/Patient/p2"):
        r = await gateway.get(path, token)
        assert r.status_code == 404, path
        assert "p2" not in r.text.replace("Specimen/s2", "").replace("Patient/p2", "")


async def test_patient_token_history_shows_only_the_launch_patients_compartment(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    token = (await gateway.launch_tokens(client_id, patient="p1"))["access_token"]
    bundle = (await gateway.get("/fhir/Specimen/_history", token)).json()
    assert _ids(bundle) == {"Specimen/s1"} and bundle["total"] == 1
    other = (await gateway.get("/fhir/Specimen/s2/_history", token)).json()
    assert other.get("entry", []) == [] and other["total"] == 0
    system = (await gateway.get("/fhir/_history", token)).json()
    assert "Specimen/s2" not in _ids(system) and "Patient/p2" not in _ids(system)


async def test_patient_token_batch_get_of_another_subjects_specimen_is_not_found(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    token = (await gateway.launch_tokens(client_id, patient="p1"))["access_token"]
    statuses = await _batch(gateway, token, "Specimen/s1", "Specimen/s2")
    assert statuses[0].startswith("200") and statuses[1].startswith("404")


async def test_read_only_token_cannot_write(gateway: Gateway) -> None:
    token = await gateway.system_token("system/*.rs")
    r = await gateway.http.put("/fhir/Specimen/s1", headers={"Authorization": f"Bearer {token}",
                                                              "Content-Type": "application/fhir+json"},
                               json={"resourceType": "Specimen", "id": "s1", "status": "unavailable"})
    assert r.status_code == 403


async def test_external_write_token_still_cannot_write(gateway: Gateway) -> None:
    token = await gateway.system_token("system/*.cruds", audience="external")
    r = await gateway.http.put("/fhir/Specimen/s1", headers={"Authorization": f"Bearer {token}",
                                                              "Content-Type": "application/fhir+json"},
                               json={"resourceType": "Specimen", "id": "s1", "status": "unavailable"})
    assert r.status_code == 403
