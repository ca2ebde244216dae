"""The lean asyncpg connection pool (gateway/store/pgpool.py) on a real PostgreSQL: how many connections it
opens, who waits for which, and which connections it keeps after errors, cancellations and lost connections."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.store.pgpool import ConnectionPool, PoolClosedError
from tests.conftest import PgDatabases


@pytest.fixture(scope="module")
async def url(pg_databases: PgDatabases) -> str:
    return await pg_databases.create()


@pytest.fixture
async def admin(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own, to watch and kill the pool's backends."""
    conn = await asyncpg.connect(url)
    yield conn
    await conn.close()


async def open_pool(url: str, min_size: int, max_size: int) -> tuple[ConnectionPool, str]:
    """A pool whose backends carry an application_name of their own, to be counted on the server."""
    name = f"pool-{uuid.uuid4().hex[:8]}"
    pool = await ConnectionPool.open(url, min_size, max_size, {"application_name": name})
    return pool, name


async def backends(admin: asyncpg.Connection, name: str) -> int:
    return await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name)


@pytest.fixture
async def pool(url: str) -> AsyncIterator[ConnectionPool]:
    """A pool of one connection, closed after the test."""
    lone, _ = await open_pool(url, 1, 1)
    yield lone
    await lone.close()


async def backend_pid(pool: ConnectionPool) -> int:
    """The server pid of the connection the next statement gets."""
    row = await pool.fetchrow("SELECT pg_backend_pid()")
    assert row is not None
    return row[0]


async def settled_backends(admin: asyncpg.Connection, name: str, expected: int) -> int:
    """The pool's backends once closed ones have gone (a backend exits a moment after its client hangs up)."""
    for _ in range(200):
        if (count := await backends(admin, name)) == expected:
            break
        await asyncio.sleep(0.01)
    return count


async def test_opens_min_size_at_once_and_more_on_demand_never_above_max_size(url: str, admin: asyncpg.Connection
                                                                               ) -> None:
    pool, name = await open_pool(url, 1, 3)
    try:
        assert await backends(admin, name) == 1
        for _ in range(5):
            await pool.fetch("SELECT 1")
        assert await backends(admin, name) == 1  # one statement at a time needs one connection
        seen: list[int] = []
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set():
                seen.append(await backends(admin, name))
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        pids = await asyncio.gather(*[pool.fetchrow("SELECT pg_backend_pid(), pg_sleep(0.05)") for _ in range(20)])
        done.set()
        await watcher
        assert len({row[0] for row in pids}) == 3 and max(seen) <= 3
        assert len(pool.pids()) == 3 and await backends(admin, name) == 3
    finally:
        await pool.close()


async def test_tasks_asking_at_once_on_an_empty_pool_open_max_size_connections(url: str, admin: asyncpg.Connection
                                                                               ) -> None:
    pool, name = await open_pool(url, 0, 2)
    try:
        assert await backends(admin, name) == 0
        assert await asyncio.gather(*[pool.fetchrow("SELECT $1::int", n) for n in range(30)]) == [
            (n,) for n in range(30)]
        assert len(pool.pids()) == 2 and await backends(admin, name) == 2
    finally:
        await pool.close()


async def test_waiters_are_served_first_come_first_served(pool: ConnectionPool) -> None:
    served: list[int] = []

    async def ask(n: int) -> None:
        await pool.fetch("SELECT 1")
        served.append(n)

    async with pool.acquire():
        tasks = []
        for n in range(6):
            tasks.append(asyncio.create_task(ask(n)))
            await asyncio.sleep(0)  # each reaches its wait before the next one starts
    await asyncio.gather(*tasks)
    assert served == list(range(6))


async def test_a_waiter_cancelled_while_waiting_loses_no_connection(pool: ConnectionPool) -> None:
    [pid] = pool.pids()
    async with pool.acquire():
        impatient = asyncio.create_task(pool.fetchrow("SELECT 'impatient'"))
        patient = asyncio.create_task(pool.fetchrow("SELECT 'patient'"))
        await asyncio.sleep(0.01)
        impatient.cancel()
        await asyncio.sleep(0)
    assert await asyncio.wait_for(patient, 5) == ("patient",)
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert pool.pids() == [pid]


async def test_a_waiter_cancelled_after_it_was_handed_a_connection_passes_it_on(pool: ConnectionPool) -> None:
    [pid] = pool.pids()
    holding = pool.acquire()
    await holding.__aenter__()
    waiter = asyncio.create_task(pool.fetch("SELECT 1"))
    await asyncio.sleep(0.01)
    await holding.__aexit__(None, None, None)  # hands the connection to the waiter, which has not resumed yet
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert await asyncio.wait_for(pool.fetchrow("SELECT 2"), 5) == (2,)
    assert pool.pids() == [pid]


async def test_a_server_error_leaves_the_connection_usable_and_it_is_reused(pool: ConnectionPool) -> None:
    [pid] = pool.pids()
    with pytest.raises(asyncpg.DivisionByZeroError):
        await pool.fetch("SELECT 1 / $1::int", 0)
    with pytest.raises(asyncpg.PostgresSyntaxError):
        await pool.fetchrow("SELEKT 1")
    with pytest.raises(asyncpg.DivisionByZeroError):
        async with pool.acquire() as conn:
            await conn.execute("SELECT 1 / 0")
    assert await pool.fetchrow("SELECT pg_backend_pid()") == (pid,)
    assert pool.pids() == [pid]


async def test_a_statement_cancelled_while_running_closes_its_connection_and_a_waiter_gets_a_new_one(
        url: str, admin: asyncpg.Connection) -> None:
    pool, name = await open_pool(url, 1, 1)
    try:
        [pid] = pool.pids()
        slow = asyncio.create_task(pool.fetch("SELECT pg_sleep(0.5)"))
        await asyncio.sleep(0.1)
        waiter = asyncio.create_task(pool.fetchrow("SELECT pg_backend_pid()"))
        await asyncio.sleep(0.01)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        new_pid = (await asyncio.wait_for(waiter, 5))[0]
        assert new_pid != pid and pool.pids() == [new_pid]
        assert await pool.fetchrow("SELECT 1") == (1,)
        assert await backends(admin, name) <= 2  # the old backend may still finish its sleep, unheard
    finally:
        await pool.close()


async def test_a_connection_lost_mid_statement_or_while_idle_is_replaced(pool: ConnectionPool,
                                                                      admin: asyncpg.Connection) -> None:
    [pid] = pool.pids()
    slow = asyncio.create_task(pool.fetch("SELECT pg_sleep(5)"))
    await asyncio.sleep(0.1)
    await admin.execute("SELECT pg_terminate_backend($1)", pid)
    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        await slow
    second = await backend_pid(pool)
    assert second != pid and pool.pids() == [second]
    await admin.execute("SELECT pg_terminate_backend($1)", second)  # idle in the pool
    await asyncio.sleep(0.2)
    third = await backend_pid(pool)
    assert third not in (pid, second) and pool.pids() == [third]


async def test_a_connection_left_in_a_transaction_or_after_an_exception_is_not_reused(pool: ConnectionPool) -> None:
    [first] = pool.pids()
    async with pool.acquire() as conn:
        await conn.execute("BEGIN")
    assert pool.pids() == []  # closed; the next statement opens another
    second = await backend_pid(pool)
    with pytest.raises(KeyError):
        async with pool.acquire() as conn:
            await conn.execute("SELECT 1")
            raise KeyError("a bug of the caller")
    assert pool.pids() == []
    third = await backend_pid(pool)
    assert len({first, second, third}) == 3


async def test_a_connection_that_cannot_be_opened_frees_its_slot(url: str) -> None:
    pool = await ConnectionPool.open(url.rsplit("/", 1)[0] + "/no_such_database", 0, 1)
    try:
        for _ in range(2):  # the second would wait forever for a slot the first kept
            with pytest.raises(asyncpg.InvalidCatalogNameError):
                await asyncio.wait_for(pool.fetch("SELECT 1"), 5)
    finally:
        await pool.close()


async def test_close_closes_idle_connections_now_and_those_in_use_when_released(url: str, admin: asyncpg.Connection
                                                                               ) -> None:
    pool, name = await open_pool(url, 2, 2)
    async with pool.acquire() as held:
        async with pool.acquire():
            waiter = asyncio.create_task(pool.fetch("SELECT 1"))
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)  # the waiter has the connection released above
        await pool.close()
        assert await settled_backends(admin, name, 1) == 1  # the idle one closed
        assert await held.fetchval("SELECT 1") == 1  # in use: still works
        with pytest.raises(PoolClosedError):
            await pool.fetch("SELECT 1")
        with pytest.raises(PoolClosedError):
            async with pool.acquire():
                pass
    await waiter
    assert held.is_closed() and pool.pids() == []
    assert await settled_backends(admin, name, 0) == 0


async def test_a_statement_waiting_for_a_connection_fails_when_the_pool_closes(url: str) -> None:
    pool, _ = await open_pool(url, 1, 1)
    async with pool.acquire():
        waiter = asyncio.create_task(pool.fetch("SELECT 1"))
        await asyncio.sleep(0.01)
        await pool.close()
        with pytest.raises(PoolClosedError):
            await waiter


async def test_server_settings_hold_on_every_connection(url: str) -> None:
    pool = await ConnectionPool.open(url, 1, 3, {"plan_cache_mode": "force_generic_plan", "jit": "off"})
    try:
        everyone_holds = asyncio.Barrier(3)

        async def settings() -> tuple[int, str, str]:
            async with pool.acquire() as conn:
                await everyone_holds.wait()  # three connections at once: two were opened on demand
                return conn.get_server_pid(), await conn.fetchval("SHOW plan_cache_mode"), await conn.fetchval(
                    "SHOW jit")

        seen = await asyncio.gather(*[settings() for _ in range(3)])
        assert len({pid for pid, _, _ in seen}) == 3
        assert {(mode, jit) for _, mode, jit in seen} == {("force_generic_plan", "off")}
        slow = asyncio.create_task(pool.fetch("SELECT pg_sleep(1)"))
        await asyncio.sleep(0.05)
        slow.cancel()  # its connection is replaced by a new one
        await asyncio.gather(slow, return_exceptions=True)
        seen = await asyncio.gather(*[settings() for _ in range(3)])
        assert {(mode, jit) for _, mode, jit in seen} == {("force_generic_plan", "off")}
    finally:
        await pool.close()


async def test_a_search_statement_cancelled_by_its_request_stops_on_the_server(url: str,
                                                                                admin: asyncpg.Connection) -> None:
    """The gateway's lone statements: a request that goes away (client gone, timeout) cancels its statement; the
    pool terminates the connection, and the backend stops within about a second (client_connection_check_interval)
    instead of running a slow statement to its end."""
    from gateway.store.database import open_database

    db = await open_database(url)
    try:
        running = asyncio.create_task(db.fetchall("SELECT pg_sleep(20)"))
        await asyncio.sleep(0.5)
        (pid,) = [p for p in db.reads.pids()
                  if await admin.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", p) ==
                  "SELECT pg_sleep(20)"]
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        for _ in range(40):
            if not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the cancelled statement went on running on the server")
        assert await db.fetchall("SELECT 1") == [(1,)]
    finally:
        await db.close()
