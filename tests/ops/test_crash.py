"""A gateway stopped in the middle of a transaction Bundle: after kill -9 the store holds all of it
or none; after SIGTERM (graceful shutdown) the transaction finishes and is answered first."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg
import httpx

from tests.ops.conftest import Cluster

ENTRIES = 800


def bundle(prefix: str) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": f"{prefix}-{n}", "birthDate": "1970-01-01"},
         "request": {"method": "PUT", "url": f"Patient/{prefix}-{n}"}} for n in range(ENTRIES)]}


async def stored(database_url: str, prefix: str) -> tuple[int, int]:
    """(current resources, versions) whose id starts with `prefix`."""
    connection = await asyncpg.connect(database_url)
    try:
        resources = await connection.fetchval("SELECT count(*) FROM resources WHERE id LIKE $1", f"{prefix}-%")
        versions = await connection.fetchval("SELECT count(*) FROM resource_versions WHERE id LIKE $1", f"{prefix}-%")
    finally:
        await connection.close()
    return resources, versions


async def writing_transaction_open(database_url: str) -> bool:
    """True when a session holds a transaction that has written rows for a while (not a short audit write)."""
    connection = await asyncpg.connect(database_url)
    try:
        return bool(await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_xid IS NOT NULL AND now() - xact_start > interval '300 milliseconds'"))
    finally:
        await connection.close()


async def post_until_mid_transaction(http: httpx.AsyncClient, cluster: Cluster,
                                     prefix: str) -> asyncio.Task[httpx.Response]:
    """POST the big Bundle to gateway A; return once its database transaction is writing."""
    database_url = cluster.env["GATEWAY_DATABASE_URL"]
    posting = asyncio.create_task(http.post(f"{cluster.a.url}/fhir", json=bundle(prefix),
                                            headers=cluster.headers(cluster.writer)))
    for _ in range(1200):
        if await writing_transaction_open(database_url) or posting.done():
            break
        await asyncio.sleep(0.025)
    assert not posting.done(), f"the transaction finished before it could be interrupted: {posting.result().text[:300]}"
    return posting


async def test_gateway_killed_mid_transaction_leaves_all_or_nothing(cluster: Cluster) -> None:
    prefix = f"crash-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=300) as http:
        posting = await post_until_mid_transaction(http, cluster, prefix)
        cluster.a.kill()
        with contextlib.suppress(httpx.TransportError):
            await posting
        await cluster.a.up()
    assert await stored(cluster.env["GATEWAY_DATABASE_URL"], prefix) in {(0, 0), (ENTRIES, ENTRIES)}, \
        "a killed transaction left part of itself behind"


async def test_sigterm_mid_transaction_finishes_and_answers_it_before_exiting(cluster: Cluster) -> None:
    prefix = f"drain-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=300) as http:
        posting = await post_until_mid_transaction(http, cluster, prefix)
        cluster.a.terminate()
        answer = await posting
        await asyncio.to_thread(cluster.a.stop)
        await cluster.a.up()
    assert answer.status_code == 200, answer.text[:500]
    assert await stored(cluster.env["GATEWAY_DATABASE_URL"], prefix) == (ENTRIES, ENTRIES)
