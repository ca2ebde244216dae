"""The two database drivers behind one small async interface.

Measured here (LIBRARIES.md): SQLAlchemy's async layer costs 2x on asyncpg and 5x on
aiosqlite for a read by id, so statements run on the drivers themselves: `sqlite3`
inline on the event loop (a point read in WAL mode takes microseconds, less than a
thread hop) and `asyncpg` connections, which cache prepared statements (pooled by pgpool.py for
statements on their own, by asyncpg.Pool for transactions).
SQL is written once with `?` placeholders; PostgreSQL gets them renumbered to `$n`.
SQLAlchemy Core still describes the schema (schema.py) and composes search SQL.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from gateway.store.pgpool import ConnectionPool

Row = tuple[Any, ...]


def one_of(dialect: str, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """SQL and parameters of "`column` is one of `values`": one array parameter on PostgreSQL (one statement
    text for any number of values, so a prepared statement's plan is kept), a list of placeholders on SQLite
    (which has no arrays; `NULL` for none: `x IN (NULL)` is never true)."""
    if dialect == "postgresql":
        return f"{column} = ANY(?)", [list(values)]
    return f"{column} IN ({','.join('?' * len(values)) or 'NULL'})", list(values)


class IntegrityError(Exception):
    """A uniqueness constraint refused a write (two writers created the same row)."""


class Connection(Protocol):
    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    async def append(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert `rows` (values of `columns`) into `table`: a bulk append, no conflict handling."""
        ...


class Database(Protocol):
    dialect: str

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    point_slots: int
    """Lookups by primary key in flight at most: more wait and go together (store/points.py); 0: each
    goes alone (an embedded database answers in the calling thread)."""

    async def fetch_point(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """`fetchone` for a lookup by primary key, whose plan never depends on the values."""
        ...
    async def fetch_points(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """`fetchall` for a statement whose best plan is the same whatever its values (lookups by key,
        bounded counts): on PostgreSQL it is planned once per connection, not at every run."""
        ...
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def transaction(self) -> Any: ...
    def stream(self, sql: str, params: Sequence[Any] = (), batch: int = 500) -> AsyncIterator[Row]: ...
    async def close(self) -> None: ...


def normalize_url(url: str) -> tuple[str, str]:
    """(dialect, url without SQLAlchemy driver suffix): `+asyncpg`, `+aiosqlite` are accepted and ignored."""
    scheme, _, rest = url.partition("://")
    base = scheme.split("+", 1)[0]
    if base in ("postgres", "postgresql"):
        return "postgresql", f"postgresql://{rest}"
    if base == "sqlite":
        return "sqlite", f"sqlite://{rest}"
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:///FILE or postgresql://...")


@lru_cache(maxsize=4096)
def to_dollar(sql: str) -> str:
    """Renumber `?` placeholders as asyncpg's `$1, $2, ...` (cached: the same SQL comes back often)."""
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


class _SqliteConn:
    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return self.raw.execute(sql, params).fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.raw.execute(sql, params).fetchall()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            return self.raw.execute(sql, params).rowcount
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self.raw.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc

    async def append(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        marks = ", ".join("?" * len(columns))
        await self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


class SqliteDatabase:
    """Embedded default. Reads run inline on a shared connection; writes on a second
    connection, one transaction at a time (SQLite has one writer), `BEGIN IMMEDIATE` so
    several worker processes queue on the file lock instead of failing mid-transaction."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._reader = self._connect()
        self._writer = self._connect()
        self._write_lock = asyncio.Lock()
        self.reader = _SqliteConn(self._reader)

    def _connect(self) -> sqlite3.Connection:
        raw = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute("PRAGMA busy_timeout=30000")
        raw.execute("PRAGMA foreign_keys=ON")
        return raw

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return self._reader.execute(sql, params).fetchone()

    fetch_point = fetchone

    point_slots = 0

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._reader.execute(sql, params).fetchall()

    fetch_points = fetchall

    async def stream(self, sql: str, params: Sequence[Any] = (), batch: int = 500) -> AsyncIterator[Row]:
        # A cursor of its own connection: iterating while the shared reader serves others.
        raw = self._connect()
        try:
            cur = raw.execute(sql, params)
            while rows := cur.fetchmany(batch):
                for row in rows:
                    yield row
                await asyncio.sleep(0)
        finally:
            raw.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._write_lock:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteConn(self._writer)
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            else:
                self._writer.execute("COMMIT")

    async def close(self) -> None:
        self._reader.close()
        self._writer.close()


class _PgConn:
    def __init__(self, raw: Any) -> None:
        self.raw = raw

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row = await self.raw.fetchrow(to_dollar(sql), *params)
        return tuple(row) if row is not None else None

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(r) for r in await self.raw.fetch(to_dollar(sql), *params)]

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        import asyncpg

        try:
            status = await self.raw.execute(to_dollar(sql), *params)
        except asyncpg.UniqueViolationError as exc:
            raise IntegrityError(str(exc)) from exc
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        import asyncpg

        try:
            await self.raw.executemany(to_dollar(sql), rows)
        except asyncpg.UniqueViolationError as exc:
            raise IntegrityError(str(exc)) from exc

    async def append(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """COPY: measured on 600 audit rows, 3.3-4.2 us of backend CPU a row against 8-10 us as INSERTs."""
        await self.raw.copy_records_to_table(table, records=rows, columns=list(columns))


async def _keep_session(connection: Any) -> None:
    """Release a pooled connection without asyncpg's default reset query (`pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL`): a second round trip after every statement, measured as a third
    of a point read. Nothing here leaves session state behind: cursors and advisory locks live inside
    transactions (asyncpg still rolls back one left open), settings are the pool's `server_settings`,
    and LISTEN runs on connections of its own."""


class PostgresDatabase:
    """Scale-out: several gateway processes share one PostgreSQL. READ COMMITTED with
    conditional updates (`WHERE version = ?`) gives optimistic locking without retries
    inside the database.

    Three sets of connections. Statements that run on their own go through two lean pools (pgpool.py: asyncpg.Pool's
    acquire and release cost more client CPU than a short statement): `reads`, planned for their values, and
    `points`, planned once. Client CPU per statement measured at concurrency 16, asyncpg.Pool -> pgpool: generic
    plans, a point read 58 -> 28 us, 21 rows of 3 kB 91 -> 60 us; custom plans 64 -> 36 and 95 -> 63 us; backend CPU
    the same or lower. Transactions, cursors (`stream`) and PgQueuer's enqueue keep asyncpg.Pool (`pool`), which
    rolls back a transaction left open."""

    dialect = "postgresql"

    def __init__(self, pool: Any, reads: ConnectionPool, points: ConnectionPool) -> None:
        self.pool = pool
        self.reads = reads
        self.points = points
        # Two: measured at concurrency 16, one statement in flight made the biggest batches (28 us of
        # CPU a read, against 49 with five and 79 uncoalesced); a second keeps reads moving while one
        # statement is slow.
        self.point_slots = 2

    @classmethod
    async def connect(cls, url: str, max_size: int = 10) -> PostgresDatabase:
        """At most `max_size` connections for transactions and `max_size` // 2 for each kind of lone statement: in
        all 2 x `max_size` per process, as when reads shared the transactions' pool (max_connections is 100 for all
        workers and tools). One of each is opened now, the others when statements wait for one."""
        import asyncpg

        from gateway.store.pgpool import ConnectionPool

        # Custom plans always: asyncpg prepares every statement, and after five runs PostgreSQL may
        # switch to a generic plan that cannot see how selective a search value is (measured: a first
        # search page went from 2 ms to over a second).
        # No JIT: a search over 100k rows is costed above jit_above_cost, and compiling it takes
        # longer than the few milliseconds its page needs (JIT pays off on analytic scans only).
        custom = {"plan_cache_mode": "force_custom_plan", "jit": "off"}
        pool = await asyncpg.create_pool(url, min_size=1, max_size=max_size, reset=_keep_session,
                                         server_settings=custom)
        # A lone statement whose request went away (cancelled) has its connection terminated by pgpool, which
        # PostgreSQL otherwise notices only when it next writes to it: a slow search would run to its end.
        # Checked every second while a statement runs, the backend stops within that.
        lone = {"client_connection_check_interval": "1000"}
        reads = await ConnectionPool.open(url, min_size=1, max_size=max_size // 2, server_settings={**custom, **lone})
        # Statements whose plan is the same for every value (reads by id, includes, consent lookups by
        # subject, and search's bounded counts and pages whose plan does not depend on the values, see
        # gateway/search/probe.py) get their own connections, which plan a prepared statement once: planning
        # it again each time nearly doubled a read (measured: 880 -> 480 us a point read). Generic plans are
        # forced: PostgreSQL's default (`auto`) weighs the generic plan's estimated cost against the custom
        # plans' and went on planning many of them at every run (backend CPU measured per statement, custom /
        # auto / generic: an include 400 / 167 / 100 us, a chain's count 267 / 267 / 67 us, a page of one
        # patient's specimens by a chain 433 / 400 / 100 us).
        points = await ConnectionPool.open(url, min_size=1, max_size=max_size // 2,
                                           server_settings={"plan_cache_mode": "force_generic_plan", "jit": "off",
                                                            **lone})
        return cls(pool, reads, points)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row = await self.reads.fetchrow(to_dollar(sql), *params)
        return tuple(row) if row is not None else None

    async def fetch_point(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row = await self.points.fetchrow(to_dollar(sql), *params)
        return tuple(row) if row is not None else None

    async def fetch_points(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(r) for r in await self.points.fetch(to_dollar(sql), *params)]

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(r) for r in await self.reads.fetch(to_dollar(sql), *params)]

    async def stream(self, sql: str, params: Sequence[Any] = (), batch: int = 500) -> AsyncIterator[Row]:
        async with self.pool.acquire() as raw, raw.transaction(readonly=True):
            async for row in raw.cursor(to_dollar(sql), *params, prefetch=batch):
                yield tuple(row)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.pool.acquire() as raw, raw.transaction():
            yield _PgConn(raw)

    async def close(self) -> None:
        await self.points.close()
        await self.reads.close()
        await self.pool.close()


async def open_database(url: str) -> SqliteDatabase | PostgresDatabase:
    dialect, clean = normalize_url(url)
    if dialect == "sqlite":
        path = urlsplit(clean).path
        path = path[1:] if path.startswith("/") else path  # sqlite:///rel.db -> rel.db, sqlite:////abs -> /abs
        return SqliteDatabase(path or ":memory:")
    return await PostgresDatabase.connect(clean)
