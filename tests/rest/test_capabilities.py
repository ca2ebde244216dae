"""The CapabilityStatement says what the server does (both engines)."""

from __future__ import annotations

import httpx


async def test_metadata_declares_r4_and_real_interactions(app_client: httpx.AsyncClient) -> None:
    r = await app_client.get("/fhir/metadata")
    assert r.status_code == 200
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    rest = cs["rest"][0]
    by_type = {res["type"]: res for res in rest["resource"]}
    specimen = {i["code"] for i in by_type["Specimen"]["interaction"]}
    assert {"read", "vread", "create", "update", "delete", "history-instance", "history-type"} <= specimen
    assert "patch" not in specimen
    sd = {i["code"] for i in by_type["StructureDefinition"]["interaction"]}
    assert "create" not in sd and "read" in sd
    assert {i["code"] for i in rest["interaction"]} >= {"transaction", "batch", "history-system"}


async def test_health(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.get("/healthz")).status_code == 200
    ready = await app_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "up"
