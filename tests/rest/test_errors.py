"""Every bad request gets an OperationOutcome with a clear diagnostic and the right 4xx (both engines)."""

from __future__ import annotations

import httpx
import pytest

FHIR = {"Content-Type": "application/fhir+json"}


def outcome(r: httpx.Response) -> dict:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"][0]["diagnostics"]
    return body


async def test_bad_json_is_400(app_client: httpx.AsyncClient) -> None:
    r = await app_client.post("/fhir/Specimen", content=b'{"resourceType": "Specimen",', headers=FHIR)
    assert r.status_code == 400
    assert "not valid JSON" in outcome(r)["issue"][0]["diagnostics"]


async def test_invalid_resource_is_400_naming_the_element(app_client: httpx.AsyncClient) -> None:
    bad = {"resourceType": "Specimen", "collection": {"quantity": {"value": "lots"}}}
    r = await app_client.post("/fhir/Specimen", json=bad, headers=FHIR)
    assert r.status_code == 400
    assert outcome(r)["issue"][0]["expression"] == ["Specimen.collection.quantity.value"]


async def test_unknown_element_is_400(app_client: httpx.AsyncClient) -> None:
    r = await app_client.post("/fhir/Specimen", json={"resourceType": "Specimen", "colour": "red"}, headers=FHIR)
    assert r.status_code == 400
    assert outcome(r)["issue"][0]["expression"] == ["Specimen.colour"]


async def test_type_mismatch_is_400(app_client: httpx.AsyncClient) -> None:
    r = await app_client.post("/fhir/Specimen", json={"resourceType": "Consent"}, headers=FHIR)
    assert r.status_code == 400
    assert "does not match" in outcome(r)["issue"][0]["diagnostics"]


async def test_update_id_mismatch_is_400(app_client: httpx.AsyncClient) -> None:
    r = await app_client.put("/fhir/Specimen/a", json={"resourceType": "Specimen", "id": "b"}, headers=FHIR)
    assert r.status_code == 400
    assert outcome(r)["issue"][0]["expression"] == ["Specimen.id"]


@pytest.mark.parametrize("path", ["/fhir/Foo/1", "/fhir/Specimen/nope", "/fhir/nothing/here/at/all/x"])
async def test_unknown_type_or_id_is_404(app_client: httpx.AsyncClient, path: str) -> None:
    r = await app_client.get(path)
    assert r.status_code == 404
    outcome(r)


async def test_method_not_allowed_is_405(app_client: httpx.AsyncClient) -> None:
    r = await app_client.patch("/fhir/Specimen/s1", json={}, headers=FHIR)
    assert r.status_code == 405
    outcome(r)


async def test_conformance_resources_are_read_only_405(app_client: httpx.AsyncClient) -> None:
    r = await app_client.put("/fhir/StructureDefinition/x", json={"resourceType": "StructureDefinition"}, headers=FHIR)
    assert r.status_code == 405
    outcome(r)


async def test_deleted_is_410(app_client: httpx.AsyncClient) -> None:
    await app_client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers=FHIR)
    await app_client.delete("/fhir/Patient/p1")
    r = await app_client.get("/fhir/Patient/p1")
    assert r.status_code == 410
    outcome(r)


async def test_body_too_large_is_413(app_client: httpx.AsyncClient) -> None:
    limit = app_client.app.state.services.settings.max_body_bytes  # type: ignore[attr-defined]
    r = await app_client.post("/fhir/Specimen", content=b" " * (limit + 1), headers=FHIR)
    assert r.status_code == 413
    outcome(r)


async def test_body_too_large_without_content_length_is_413(app_client: httpx.AsyncClient) -> None:
    limit = app_client.app.state.services.settings.max_body_bytes  # type: ignore[attr-defined]

    async def chunks():
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    r = await app_client.post("/fhir/Specimen", content=chunks(), headers=FHIR)
    assert r.status_code == 413


async def test_wrong_content_type_is_415(app_client: httpx.AsyncClient) -> None:
    r = await app_client.post("/fhir/Specimen", content=b"<Specimen/>",
                              headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 415
    outcome(r)


@pytest.mark.parametrize("headers,query", [({"Accept": "application/fhir+xml"}, ""), ({}, "?_format=xml")])
async def test_xml_is_406(app_client: httpx.AsyncClient, headers: dict, query: str) -> None:
    r = await app_client.get(f"/fhir/metadata{query}", headers=headers)
    assert r.status_code == 406
    outcome(r)


async def test_malformed_if_match_is_400(app_client: httpx.AsyncClient) -> None:
    r = await app_client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"},
                             headers={**FHIR, "If-Match": "yesterday"})
    assert r.status_code == 400
    outcome(r)


async def test_bad_count_and_since_are_400(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.get("/fhir/_history?_count=-1")).status_code == 400
    assert (await app_client.get("/fhir/_history?_since=last-tuesday")).status_code == 400
    assert (await app_client.get("/fhir/_history?_page=%%%")).status_code == 400


async def test_bad_ids_are_400(app_client: httpx.AsyncClient) -> None:
    r = await app_client.put("/fhir/Patient/has%20space", json={"resourceType": "Patient", "id": "has space"},
                             headers=FHIR)
    assert r.status_code == 400
    assert outcome(r)["issue"][0]["expression"] == ["Patient.id"]


async def test_profile_violation_is_422_naming_the_element(app_client: httpx.AsyncClient) -> None:
    claimed = {"resourceType": "Specimen", "status": "available",
               "meta": {"profile": ["https://biobank.massgeneral.org/fhir/StructureDefinition/BiobankSpecimen"]}}
    r = await app_client.post("/fhir/Specimen", json=claimed, headers=FHIR)
    assert r.status_code == 422
    issues = outcome(r)["issue"]
    assert any(i["severity"] == "error" and i.get("expression") for i in issues)
    assert (await app_client.get("/fhir/Specimen/_history?_count=0")).json()["total"] == 0


async def test_unknown_code_in_a_required_binding_is_422(app_client: httpx.AsyncClient) -> None:
    r = await app_client.post("/fhir/Specimen", json={"resourceType": "Specimen", "status": "lost"}, headers=FHIR)
    assert r.status_code == 422
    assert outcome(r)["issue"][0]["expression"] == ["Specimen.status"]
