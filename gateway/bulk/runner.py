"""Runs one export job: claim it, write its files page by page, finish it — or resume it.

Every line passes the egress gate (`Gate.disclose_many`, one consent lookup per page) as
the job's principal: scopes, consent and pseudonymisation apply to export exactly as to a
search. Progress is durable at file granularity: each finished file is recorded with the
last resource id it covers, so a job taken over after a crash starts after that id with
the next part number and never writes a line twice.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import structlog

from gateway.access.gate import Gate
from gateway.access.scopes import READ
from gateway.bulk import audit
from gateway.bulk.config import ExportSettings
from gateway.bulk.elements import subsetter
from gateway.bulk.jobs import ExportFile, Job, JobStore, Status
from gateway.bulk.ndjson import NdjsonParts
from gateway.bulk.request import warning_outcomes
from gateway.bulk.selection import Selection, select
from gateway.fhir.instant import now_us
from gateway.observability import metrics
from gateway.search.engine import SearchEngine
from gateway.store import Store, StoredResource

log = structlog.get_logger("gateway.bulk")


class Stopped(Exception):
    """The job was cancelled or taken over by another worker: stop writing at once."""


@dataclass
class Runner:
    store: Store
    gate: Gate
    search: SearchEngine
    jobs: JobStore
    config: ExportSettings
    root: Path
    owner: str

    @property
    def _lease_us(self) -> int:
        return int(self.config.lease_seconds * 1_000_000)

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    async def run(self, job_id: str) -> None:
        """Work on `job_id` if nobody else does. Never raises for a job's own failure: the job records it."""
        job = await self.jobs.claim(job_id, self.owner, self._lease_us)
        if job is None:
            return
        if job.attempts > self.config.max_attempts:
            await self._fail(job, f"the export was started {job.attempts - 1} times and never finished; giving up")
            return
        try:
            await self._export(job)
        except Stopped:
            if (current := await self.jobs.get(job_id)) is None or current.status == "cancelled":
                shutil.rmtree(self.folder(job_id), ignore_errors=True)
        except asyncio.CancelledError:
            await asyncio.shield(self.jobs.release(job_id, self.owner))
            raise
        except Exception as exc:
            log.exception("export failed", job=job_id)
            await self._fail(job, f"the export failed: {type(exc).__name__}: {exc}")

    async def _end(self, job: Job, status: Status, outcome: audit.Outcome, description: str,
                   error: str | None = None) -> None:
        """Finish the job and write its AuditEvent together; nothing when the job is no longer ours."""
        files = await self.jobs.files(job.id)
        async with self.store.transaction() as tx:
            if await self.jobs.finish(tx.conn, job.id, self.owner, status, self._expiry(), error):
                await tx.create(audit.audit_event(job, files, outcome, description))
                metrics.export_job(status)

    async def _fail(self, job: Job, reason: str) -> None:
        await self._end(job, "failed", "8", reason, reason)
        shutil.rmtree(self.folder(job.id), ignore_errors=True)

    def _expiry(self) -> int:
        return now_us() + self.config.expiry_seconds * 1_000_000

    async def _export(self, job: Job) -> None:
        folder = self.folder(job.id)
        folder.mkdir(parents=True, exist_ok=True)
        done = [f for f in await self.jobs.files(job.id) if f.kind == "output"]
        written = sum(f.count for f in done)
        types = job.request.types
        last = max(done, key=lambda f: (types.index(f.type), f.part), default=None)
        start = types.index(last.type) if last else 0
        restriction = self.gate.restrict(job.principal, READ)
        for i, type_ in enumerate(types[start:], start):
            resume = last if last is not None and i == start else None
            selection = select(self.search, job.id, job.request, type_, job.principal, restriction)
            parts = NdjsonParts(folder, type_, resume.part + 1 if resume else 1, self.config.file_max_bytes)
            try:
                written = await self._type(job, selection, parts, resume.last_id if resume else "", written)
            finally:
                parts.discard()
        await self._errors(job, folder, written)
        await self._end(job, "completed", "0", f"export completed: {written} resources")

    async def _type(self, job: Job, selection: Selection, parts: NdjsonParts, after: str, written: int) -> int:
        """Write one type's lines after id `after`; returns the running total of lines written."""
        subset: Callable[[bytes], bytes] | None = subsetter(job.request.elements, selection.type)
        size = self.config.page_size
        while True:
            sql, params = selection.page(after, size)
            rows = await self.store.db.fetchall(sql, params)
            if not rows:
                break
            page = [StoredResource(r[0], r[1], r[2], r[3], bool(r[4]), r[5], bytes(r[6])) for r in rows]
            bodies = await self.gate.disclose_many(job.principal, page)
            for stored, body in zip(page, bodies, strict=True):
                if body is None:
                    continue
                written += 1
                finished = parts.write(subset(body) if subset else body, stored.id)
                if finished is not None:
                    await self._record(job, finished, written - 1)
            after = page[-1].id
            if not await self.jobs.renew(job.id, self.owner, self._lease_us, written):
                raise Stopped(job.id)
            if len(rows) < size:
                break
            # SQLite statements run inline on the event loop: without this a job would hold the loop
            # (and every request of this instance) for its whole run.
            await asyncio.sleep(0)
        finished = parts.close()
        if finished is not None:
            await self._record(job, finished, written)
        return written

    async def _record(self, job: Job, file: ExportFile, written: int) -> None:
        if not await self.jobs.add_file(job.id, self.owner, file, self._lease_us, written):
            raise Stopped(job.id)

    async def _errors(self, job: Job, folder: Path, written: int) -> None:
        """The manifest's `error` file: OperationOutcomes for what the request asked and was not done."""
        outcomes = warning_outcomes(job.request)
        if not outcomes:
            return
        parts = NdjsonParts(folder, "OperationOutcome", 1, self.config.file_max_bytes, kind="error")
        for outcome in outcomes:
            parts.write(orjson.dumps(outcome), "")
        finished = parts.close()
        assert finished is not None
        await self._record(job, finished, written)
