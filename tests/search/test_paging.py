"""Keyset paging: 10,000 matches walked with _count=50 while other resources are being written
(new specimens that match and do not, updates of matching ones) — every match that existed
when the walk began comes back exactly once (both engines)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from gateway.store import Store

from ..conftest import PgDatabases
from .conftest import running

N = 10_000


def _specimen(i: int, status: str = "available", note: str | None = None) -> dict:
    body = {"resourceType": "Specimen", "id": f"bulk-{i:05d}", "status": status,
            "subject": {"reference": f"Patient/p{i % 97}"}, "collection": {"collectedDateTime": "2024-01-01"}}
    if note:
        body["note"] = [{"text": note}]
    return body


async def _write_until(store: Store, stop: asyncio.Event) -> int:
    """New matches, new non-matches and updates of matches, interleaved with the walk."""
    written, k = 0, 0
    while not stop.is_set():
        k += 1
        batch = [_specimen(2 * k * 7 + 1), _specimen(2 * k * 11 + 1, "unavailable"),
                 _specimen((2 * k * 13) % (N * 2), note=f"touched {k}")]
        await store.put_many(batch)
        written += len(batch)
        await asyncio.sleep(0)
    return written


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_every_match_exactly_once_while_writing(engine: str, pg_databases: PgDatabases) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="gw-paging-"))
    url = f"sqlite:///{tmp}/gateway.db" if engine == "sqlite" else await pg_databases.create()
    async for gw in running(url, tmp, lambda: [_specimen(i) for i in range(0, N * 2, 2)]):
        store = gw.app.state.services.store
        if engine == "postgresql":
            await store.db.fetchall("ANALYZE")  # what autovacuum does after a bulk load; plans need statistics
        stop = asyncio.Event()
        task = asyncio.create_task(_write_until(store, stop))
        seen: list[str] = []
        url_: str | None = "/fhir/Specimen?status=available&_count=50&_sort=_id"
        pages = 0
        while url_:
            bundle = (await gw.client.get(url_)).json()
            seen += [e["resource"]["id"] for e in bundle["entry"]]
            url_ = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
            pages += 1
            await asyncio.sleep(0)
        stop.set()
        written = await task
        assert written > 0
        originals = {f"bulk-{i:05d}" for i in range(0, N * 2, 2)}
        assert len(seen) == len(set(seen))
        assert originals <= set(seen)
        assert pages >= N // 50
