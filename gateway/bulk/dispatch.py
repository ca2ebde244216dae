"""Handing export jobs to workers: pgqueuer on PostgreSQL, an in-process queue on SQLite.

Why pgqueuer: the gateway already runs on PostgreSQL when it runs as several instances, and
pgqueuer is a maintained queue on exactly that — asyncpg (the driver the store uses),
`FOR UPDATE SKIP LOCKED` dequeueing, LISTEN/NOTIFY wake-ups, per-job heartbeats and the
re-pick of a job whose worker's heartbeat went stale. No second service to run, as
arq/saq would need Redis to be mandatory, and no second driver, as procrastinate would
need psycopg. The single-instance SQLite default has no other process to hand work to, so
an asyncio queue in the process does it behind the same two calls (`submit`, `stop`).

Either way the queue only decides *who* runs a job; the job's own lease in `bulk_jobs`
(see jobs.py) decides whether they may, so a job handed out twice still runs once, and the
service's sweep re-submits whatever no live worker holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol

import structlog

log = structlog.get_logger("gateway.bulk")

Run = Callable[[str], Awaitable[None]]
ENTRYPOINT = "gateway.bulk.export"
_INSTALL_LOCK = 0x6275_6C6B  # "bulk"


class Dispatcher(Protocol):
    async def start(self) -> None: ...
    async def submit(self, job_id: str) -> None: ...
    async def stop(self) -> None: ...


class InProcessDispatcher:
    """`workers` tasks of this process take job ids from an asyncio queue (SQLite, one instance)."""

    def __init__(self, run: Run, workers: int) -> None:
        self.run, self.workers = run, workers
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.workers)]

    async def submit(self, job_id: str) -> None:
        if job_id not in self._queued:
            self._queued.add(job_id)
            self._queue.put_nowait(job_id)

    async def _work(self) -> None:
        while True:
            job_id = await self._queue.get()
            self._queued.discard(job_id)
            try:
                await self.run(job_id)
            except Exception:
                log.exception("export worker error", job=job_id)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class PgQueuerDispatcher:
    """Jobs go through pgqueuer's queue table; this instance's QueueManager runs up to `workers` of them."""

    def __init__(self, pool: Any, dsn: str, run: Run, workers: int, heartbeat: timedelta) -> None:
        self.pool, self.dsn, self.run, self.workers, self.heartbeat = pool, dsn, run, workers, heartbeat
        self._conn: Any = None
        self._manager: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import asyncpg
        from pgqueuer import AsyncpgDriver, QueueManager
        from pgqueuer.models import Job
        from pgqueuer.queries import Queries

        self._conn = await asyncpg.connect(self.dsn)  # its own connection: LISTEN needs one that stays
        queries = Queries(AsyncpgDriver(self._conn))
        await self._conn.execute("SELECT pg_advisory_lock($1)", _INSTALL_LOCK)  # instances starting together
        try:
            if not await queries.schema_is_installed():
                await queries.install()
        finally:
            await self._conn.execute("SELECT pg_advisory_unlock($1)", _INSTALL_LOCK)
        self._manager = QueueManager(queries)

        async def handle(job: Job) -> None:
            await self.run((job.payload or b"").decode())

        self._manager.entrypoint(ENTRYPOINT)(handle)
        self._task = asyncio.create_task(self._manager.run(
            dequeue_timeout=timedelta(seconds=5), batch_size=1, max_concurrent_tasks=max(2, self.workers),
            heartbeat_timeout=self.heartbeat))

    async def submit(self, job_id: str) -> None:
        from pgqueuer.queries import Queries

        await Queries.from_asyncpg_pool(self.pool).enqueue(ENTRYPOINT, job_id.encode(), dedupe_key=job_id,
                                                           on_conflict="skip")

    async def stop(self) -> None:
        """Stop taking jobs; a job still running is cancelled (its lease released, so the next
        instance resumes it at once) rather than holding up the shutdown."""
        if self._task is not None:
            self._manager.shutdown.set()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout=1.0)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._conn is not None:
            await self._conn.close()
