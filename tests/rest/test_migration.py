"""Starting beside busy instances: a current schema is not migrated again (PostgreSQL)."""

from __future__ import annotations

import asyncio

import asyncpg

from gateway.store import Store
from tests.conftest import PgDatabases


async def test_an_instance_starts_while_another_one_is_writing(pg_databases: PgDatabases) -> None:
    """`CREATE INDEX IF NOT EXISTS` waits for every open write on its table (and deadlocked with
    one, seen in a benchmark): on a current schema no DDL runs, so a start never waits for writers."""
    url = await pg_databases.create()
    await (await Store.open(url)).close()  # the first instance creates the schema
    writer = await asyncpg.connect(url)
    try:
        async with writer.transaction():
            await writer.execute("LOCK TABLE resources, search_token IN ROW EXCLUSIVE MODE")  # a write in flight
            store = await asyncio.wait_for(Store.open(url), timeout=10)
            assert await store.read("Patient", "none") is None
            await store.close()
    finally:
        await writer.close()
