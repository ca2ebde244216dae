"""Every access leaves exactly one AuditEvent, readable by internal auditors only (both engines)."""

from __future__ import annotations

import base64

import httpx

from gateway.access.principal import Principal
from gateway.access.scopes import Scopes

FHIR = {"Content-Type": "application/fhir+json"}


async def audit_events(client: httpx.AsyncClient) -> list[dict]:
    app = client.app  # type: ignore[attr-defined]
    await app.state.audit.flush()
    rows = await app.state.services.store.db.fetchall(
        "SELECT content FROM resources WHERE type = 'AuditEvent' ORDER BY ts")
    import orjson

    return [orjson.loads(bytes(r[0])) for r in rows]


async def test_a_read_produces_exactly_one_audit_event(app_client: httpx.AsyncClient) -> None:
    await app_client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers=FHIR)
    before = await audit_events(app_client)
    r = await app_client.get("/fhir/Patient/p1")
    assert r.status_code == 200
    after = await audit_events(app_client)
    new = after[len(before):]
    assert len(new) == 1
    event = new[0]
    assert event["subtype"][0]["code"] == "read" and event["action"] == "R" and event["outcome"] == "0"
    assert event["agent"][0]["who"]["identifier"]["value"] == "dev"
    assert {"reference": "Patient/p1"} in [e.get("what") for e in event["entity"]]
    query = next(e["query"] for e in event["entity"] if "query" in e)
    assert base64.b64decode(query).decode() == "/fhir/Patient/p1"


async def test_refused_access_is_audited_too(app_client: httpx.AsyncClient) -> None:
    before = await audit_events(app_client)
    assert (await app_client.get("/fhir/Patient/nope")).status_code == 404
    new = (await audit_events(app_client))[len(before):]
    assert len(new) == 1 and new[0]["outcome"] == "4"


async def test_external_principals_never_read_audit_events(app_client: httpx.AsyncClient) -> None:
    await app_client.get("/fhir/metadata")
    await app_client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers=FHIR)
    events = await audit_events(app_client)
    assert events
    app = app_client.app  # type: ignore[attr-defined]

    async def external(_request: object) -> Principal:
        return Principal("collab", "external", Scopes.parse("system/*.rs"))

    app.state.services.authenticate = external
    r = await app_client.get(f"/fhir/AuditEvent/{events[0]['id']}")
    assert r.status_code == 404
    history = (await app_client.get("/fhir/_history?_count=1000")).json()
    assert not [e for e in history.get("entry", []) if e["resource"]["resourceType"] == "AuditEvent"]
