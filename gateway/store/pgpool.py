"""A lean pool of asyncpg connections for statements that run on their own, outside a transaction.

asyncpg.Pool's acquire and release cost more client CPU than a short statement itself (measured, uvloop, asyncpg
0.32, client CPU per point read: 63 us through `Pool.fetch` at concurrency 1 and 58 at 16, against 28 here, within
5 us of a connection held throughout): its release runs under `asyncio.shield` (a Task per statement), an
inactivity timer is armed and cancelled at every use, and every acquire builds a proxy object. Here a statement
takes an idle connection (or opens one, up to `max_size`) and its release hands it straight to the oldest waiter.
Transactions, cursors and PgQueuer stay on asyncpg.Pool (database.py).

A connection goes back to the pool only when its statement ended, with its rows or with a server error
(`asyncpg.PostgresError`: PostgreSQL answered and is ready for the next statement). After anything else (the
task was cancelled while its statement ran, the connection was lost) its state is unknown: it is terminated,
and the next statement that finds no idle connection opens a new one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")


class PoolClosedError(asyncpg.InterfaceError):
    """A statement was asked of a pool after its close()."""


class ConnectionPool:
    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], max_size: int) -> None:
        """`connect()`: a new connection; `max_size`: connections open (or being opened) at most."""
        self._connect = connect
        self._max_size = max_size
        self._idle: list[asyncpg.Connection] = []  # a stack: the most recently used (warmest) goes first
        self._open: set[asyncpg.Connection] = set()
        self._slots = 0  # connections open or being opened, never above max_size
        # None for a waiter means: a connection went away, open one in its slot.
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._closed = False

    @classmethod
    async def open(cls, url: str, min_size: int = 1, max_size: int = 10,
                   server_settings: Mapping[str, str] | None = None) -> ConnectionPool:
        """A pool with `min_size` connections open; more are opened when statements wait for one. Every
        connection starts with `server_settings` (session settings survive: nothing resets them)."""
        pool = cls(partial(asyncpg.connect, url, server_settings=dict(server_settings or {})), max_size)
        try:
            for _ in range(min_size):
                pool._slots += 1
                pool._release(await pool._open_slot())
        except BaseException:
            await pool.close()
            raise
        return pool

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self._run(asyncpg.Connection.fetch, sql, args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self._run(asyncpg.Connection.fetchrow, sql, args)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the pool for several statements (session state such as PREPARE stays with it: undo it
        before leaving). Left inside a transaction, or after an exception other than a server error, it is closed."""
        conn = await self._take()
        try:
            yield conn
        except BaseException as exc:
            self._settle(conn, exc)
            raise
        self._settle(conn, None)

    def pids(self) -> list[int]:
        """Server process ids of the open connections (idle or in use): to read their CPU time in /proc."""
        return [conn.get_server_pid() for conn in self._open if not conn.is_closed()]

    async def close(self) -> None:
        """Closes the idle connections now and those in use when they are released; statements waiting for a
        connection fail with PoolClosedError, as do later ones."""
        if self._closed:
            return
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosedError("the connection pool is closed"))
        idle, self._idle = self._idle, []
        for conn in idle:
            self._open.discard(conn)
            self._slots -= 1
        # A connection the server already dropped fails its goodbye: it is closed all the same.
        await asyncio.gather(*(conn.close() for conn in idle), return_exceptions=True)

    async def _run(self, method: Callable[..., Awaitable[T]], sql: str, args: tuple[Any, ...]) -> T:
        conn = await self._take()
        try:
            result = await method(conn, sql, *args)
        except BaseException as exc:
            self._settle(conn, exc)
            raise
        self._settle(conn, None)
        return result

    async def _take(self) -> asyncpg.Connection:
        """An idle connection, else a new one if a slot is free, else the next one released (first come first
        served)."""
        if self._closed:
            raise PoolClosedError("the connection pool is closed")
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
            self._open.discard(conn)  # lost while idle (server restart, pg_terminate_backend): its slot frees
            self._slots -= 1
        if self._slots < self._max_size:
            self._slots += 1  # taken before connecting, so that tasks asking at once never open too many
            return await self._open_slot()
        waiter: asyncio.Future[asyncpg.Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            conn = await waiter
        except asyncio.CancelledError:
            # Cancelled after a release handed it a connection (or a slot) but before it resumed: pass it on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                given = waiter.result()
                if given is None:
                    self._free_slot()
                else:
                    self._release(given)
            raise
        return conn if conn is not None else await self._open_slot()

    async def _open_slot(self) -> asyncpg.Connection:
        """A new connection in a slot already counted; if it cannot be opened, the slot goes to the next waiter."""
        try:
            conn = await self._connect()
        except BaseException:
            self._free_slot()
            raise
        self._open.add(conn)
        return conn

    def _settle(self, conn: asyncpg.Connection, error: BaseException | None) -> None:
        """After use: back to the pool if its statement ended, with rows or a server error; else terminated (a
        cancelled statement may still run on the server, a lost connection has no state to trust)."""
        if error is None or isinstance(error, asyncpg.PostgresError):
            self._release(conn)
        else:
            self._discard(conn)

    def _release(self, conn: asyncpg.Connection) -> None:
        # A server error may come with the end of the connection: asyncpg reports a connection lost mid-statement
        # as a PostgresError too (ConnectionDoesNotExistError, after "FATAL: terminating connection due to
        # administrator command"). A transaction left open would leak into the next statements.
        if self._closed or conn.is_closed() or conn.is_in_transaction():
            self._discard(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a waiter cancelled meanwhile is skipped
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _discard(self, conn: asyncpg.Connection) -> None:
        conn.terminate()
        self._open.discard(conn)
        self._free_slot()

    def _free_slot(self) -> None:
        """A connection went away (or was never opened): the oldest waiter opens one in its slot."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._slots -= 1
