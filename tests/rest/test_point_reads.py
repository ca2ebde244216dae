"""Reads by id coalesced under concurrency (gateway/store/points.py): every read gets its own row,
whether it went alone or in a batch; errors and cancellations stay with the reads they concern."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.store.points import PointReads

FHIR = {"Content-Type": "application/fhir+json"}


class FakeDatabase:
    """Rows for ids 'a0'..'a99' of type T; records the statements it answered."""

    def __init__(self, fail: bool = False) -> None:
        self.singles: list[tuple[str, str]] = []
        self.batches: list[list[tuple[str, str]]] = []
        self.fail = fail

    def row(self, type_: str, id_: str) -> tuple[str, str, str] | None:
        return (type_, id_, f"content of {id_}") if type_ == "T" and id_.startswith("a") else None

    async def one(self, type_: str, id_: str) -> tuple[str, str, str] | None:
        self.singles.append((type_, id_))
        await asyncio.sleep(0.01)
        if self.fail:
            raise ConnectionError("database went away")
        return self.row(type_, id_)

    async def many(self, types: list[str], ids: list[str]) -> list[tuple[str, str, str]]:
        self.batches.append(list(zip(types, ids, strict=True)))
        await asyncio.sleep(0.01)
        if self.fail:
            raise ConnectionError("database went away")
        return [r for t, i in zip(types, ids, strict=True) if (r := self.row(t, i))]


async def test_reads_beyond_the_slots_go_together_and_each_gets_its_row() -> None:
    db = FakeDatabase()
    reads = PointReads(db.one, db.many, slots=2)
    keys = [("T", f"a{i}") for i in range(10)] + [("T", "missing"), ("U", "a1"), ("T", "a3")]
    rows = await asyncio.gather(*[reads.read(t, i) for t, i in keys])
    assert rows == [db.row(t, i) for t, i in keys]
    assert len(db.singles) == 2  # two went at once, the rest waited for a slot
    assert sum(len(b) for b in db.batches) == len(set(keys)) - 2  # the repeated a3 was asked once
    assert len(db.batches) <= 2


async def test_an_idle_read_goes_alone_at_once() -> None:
    db = FakeDatabase()
    reads = PointReads(db.one, db.many, slots=2)
    assert await reads.read("T", "a1") == db.row("T", "a1")
    assert db.singles == [("T", "a1")] and db.batches == []


async def test_a_failing_batch_fails_each_read_it_carried_and_the_next_reads_work() -> None:
    db = FakeDatabase(fail=True)
    reads = PointReads(db.one, db.many, slots=1)
    answers = await asyncio.gather(*[reads.read("T", f"a{i}") for i in range(5)], return_exceptions=True)
    assert all(isinstance(a, ConnectionError) for a in answers)
    db.fail = False
    assert await asyncio.gather(*[reads.read("T", f"a{i}") for i in range(5)]) == [
        db.row("T", f"a{i}") for i in range(5)]


async def test_a_cancelled_read_does_not_cancel_a_shared_answer() -> None:
    db = FakeDatabase()
    reads = PointReads(db.one, db.many, slots=1)
    first = asyncio.create_task(reads.read("T", "a0"))  # takes the slot
    await asyncio.sleep(0)
    impatient = asyncio.create_task(reads.read("T", "a5"))
    patient = asyncio.create_task(reads.read("T", "a5"))
    await asyncio.sleep(0)
    impatient.cancel()
    assert await patient == db.row("T", "a5")
    assert await first == db.row("T", "a0")
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_concurrent_reads_over_http_each_get_their_resource(app_client: httpx.AsyncClient) -> None:
    """On both engines (on PostgreSQL, most of these go in batches)."""
    for n in range(30):
        await app_client.put(f"/fhir/Organization/o{n}", json={"resourceType": "Organization", "id": f"o{n}",
                                                                "name": f"Lab {n}"}, headers=FHIR)
    paths = [f"/fhir/Organization/o{n % 30}" for n in range(90)] + ["/fhir/Organization/none"]
    answers = await asyncio.gather(*[app_client.get(p) for p in paths])
    assert [a.status_code for a in answers] == [200] * 90 + [404]
    assert [a.json()["name"] for a in answers[:90]] == [f"Lab {n % 30}" for n in range(90)]
