"""Concurrent updates of one resource never lose a version (both engines)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.store import StoredResource
from gateway.store.resources import Transaction

FHIR = {"Content-Type": "application/fhir+json"}


def patient(n: int) -> dict:
    return {"resourceType": "Patient", "id": "p1", "birthDate": f"19{n:02d}-01-01"}


async def test_20_concurrent_updates_make_20_versions_or_clean_conflicts(app_client: httpx.AsyncClient) -> None:
    await app_client.put("/fhir/Patient/p1", json=patient(99), headers=FHIR)
    answers = await asyncio.gather(*[app_client.put("/fhir/Patient/p1", json=patient(n), headers=FHIR)
                                     for n in range(20)])
    ok = [a for a in answers if a.status_code == 200]
    assert all(a.status_code in (200, 409) for a in answers)
    versions = sorted(int(a.json()["meta"]["versionId"]) for a in ok)
    assert versions == list(range(2, 2 + len(ok)))
    history = (await app_client.get("/fhir/Patient/p1/_history?_count=100")).json()
    assert history["total"] == 1 + len(ok)
    written = {e["resource"]["birthDate"] for e in history["entry"]}
    assert {a.json()["birthDate"] for a in ok} <= written


async def test_concurrent_if_match_updates_one_wins_rest_412(app_client: httpx.AsyncClient) -> None:
    await app_client.put("/fhir/Patient/p1", json=patient(99), headers=FHIR)
    answers = await asyncio.gather(*[
        app_client.put("/fhir/Patient/p1", json=patient(n), headers={**FHIR, "If-Match": 'W/"1"'}) for n in range(20)
    ])
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 1
    assert statuses.count(412) == 19
    assert (await app_client.get("/fhir/Patient/p1")).json()["meta"]["versionId"] == "2"


async def test_a_writer_that_keeps_losing_the_race_gets_409_and_nothing_is_written(
        app_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic 409: every attempt of the update reads version 1, but version 2 is already
    committed (another writer won in between, each time), so the optimistic UPDATE matches no row."""
    await app_client.put("/fhir/Patient/p1", json=patient(98), headers=FHIR)
    stale = await app_client.app.state.services.store.read("Patient", "p1")  # type: ignore[attr-defined]
    await app_client.put("/fhir/Patient/p1", json=patient(99), headers=FHIR)

    async def current(self: Transaction, type_: str, id_: str) -> StoredResource | None:
        return stale

    monkeypatch.setattr(Transaction, "current", current)
    answer = await app_client.put("/fhir/Patient/p1", json=patient(1), headers=FHIR)
    monkeypatch.undo()
    assert answer.status_code == 409
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "conflict"
    assert "changed by another request" in outcome["issue"][0]["diagnostics"]
    now = (await app_client.get("/fhir/Patient/p1")).json()
    assert now["meta"]["versionId"] == "2" and now["birthDate"] == "1999-01-01"
