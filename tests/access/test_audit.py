"""Every access leaves exactly one AuditEvent, readable by internal auditors only (both engines)."""

from __future__ import annotations

import base64

import httpx
import pytest

from gateway.access.audit import Access
from gateway.access.principal import Principal
from gateway.access.scopes import Scopes

FHIR = {"Content-Type": "application/fhir+json"}


async def audit_events(client: httpx.AsyncClient) -> list[dict]:
    """What an internal auditor finds, oldest first, leaving out the auditor's own searches."""
    query = "/fhir/AuditEvent?_count=1000&_sort=date"
    bundle = (await client.get(query)).json()
    events = [e["resource"] for e in bundle.get("entry", [])]
    return [e for e in events if base64.b64decode(e["entity"][-1]["query"]).decode() != query]


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


async def test_accesses_are_durable_before_they_become_audit_events(app_client: httpx.AsyncClient) -> None:
    """A read is first a row of the durable audit queue; the auditor's query turns it into an AuditEvent."""
    app = app_client.app  # type: ignore[attr-defined]
    store = app.state.services.store
    await app_client.put("/fhir/Patient/p2", json={"resourceType": "Patient", "id": "p2"}, headers=FHIR)
    await audit_events(app_client)
    assert (await app_client.get("/fhir/Patient/p2")).status_code == 200
    await app.state.audit.write()
    queued = await store.db.fetchall("SELECT interaction, released FROM audit_queue")
    assert ("read", "Patient/p2") in queued
    reads = [e for e in await audit_events(app_client) if e["subtype"][0]["code"] == "read"
             and {"reference": "Patient/p2"} in [x.get("what") for x in e["entity"]]]
    assert len(reads) == 1
    assert await store.db.fetchall("SELECT seq FROM audit_queue WHERE interaction = 'read'") == []


async def test_revinclude_of_audit_events_sees_the_latest_accesses(app_client: httpx.AsyncClient) -> None:
    """`_revinclude=AuditEvent:entity` from a Patient search: the reads just made are included."""
    await app_client.put("/fhir/Patient/p3", json={"resourceType": "Patient", "id": "p3"}, headers=FHIR)
    for _ in range(2):
        assert (await app_client.get("/fhir/Patient/p3")).status_code == 200
    bundle = (await app_client.get("/fhir/Patient?_id=p3&_revinclude=AuditEvent:entity")).json()
    included = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert sum(e["subtype"][0]["code"] == "read" for e in included) == 2


async def test_accesses_survive_a_database_that_refuses_them_for_a_while(
        app_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the queue cannot be written the rows stay in memory (bounded); once it can, none is lost."""
    app = app_client.app  # type: ignore[attr-defined]
    audit, db = app.state.audit, app.state.services.store.db
    await app_client.put("/fhir/Patient/p4", json={"resourceType": "Patient", "id": "p4"}, headers=FHIR)
    await audit.write()

    def down() -> object:
        raise ConnectionError("database down")

    monkeypatch.setattr(db, "transaction", down)
    audit.record(Access("c", "internal", "read", "GET", "/fhir/Patient/p4", "", 200, ["Patient/p4"]))
    with pytest.raises(ConnectionError):
        await audit.write()
    monkeypatch.undo()
    await audit.write()
    assert ("c", "Patient/p4") in await db.fetchall("SELECT client_id, released FROM audit_queue")
