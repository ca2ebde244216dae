"""The export service the HTTP layer talks to: kick-off, status, manifest, cancel, files —
and the sweep that keeps jobs moving and removes expired ones.

The sweep runs on every instance, at start and then every half lease: it re-submits each job
no live worker holds (new ones whose hand-off was lost, and those whose worker died), and
deletes the files and rows of expired jobs. So a job found in progress at start is resumed
(or failed after `max_attempts`), and none stays "in progress" forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog

from gateway.access.gate import Gate
from gateway.access.principal import Principal
from gateway.access.scopes import READ
from gateway.bulk import audit
from gateway.bulk.config import ExportSettings
from gateway.bulk.dispatch import Dispatcher, InProcessDispatcher, PgQueuerDispatcher
from gateway.bulk.jobs import ExportFile, Job, JobStore
from gateway.bulk.request import ExportRequest
from gateway.bulk.runner import Runner
from gateway.bulk.selection import select
from gateway.fhir.errors import FhirError
from gateway.fhir.instant import now_us, to_instant
from gateway.search.engine import SearchEngine
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.database import normalize_url

log = structlog.get_logger("gateway.bulk")


def _not_found(job_id: str, why: str = "is not known") -> FhirError:
    return FhirError.of(404, "not-found", f"export job {job_id} {why}")


def _members(group: dict[str, Any]) -> list[str]:
    """Patient ids of a cohort's active members (`member.entity` = `Patient/<id>`, BiobankCohort)."""
    out = set()
    for member in group.get("member") or []:
        kind, _, id_ = (member.get("entity") or {}).get("reference", "").rpartition("/")
        if kind.rsplit("/", 1)[-1] == "Patient" and id_ and not member.get("inactive"):
            out.add(id_)
    return sorted(out)


class Exports:
    def __init__(self, store: Store, gate: Gate, search: SearchEngine, settings: Settings, config: ExportSettings
                 ) -> None:
        self.store, self.gate, self.search, self.config = store, gate, search, config
        self.base = settings.base_url.rstrip("/")
        self.jobs = JobStore(store.db)
        self.root = Path(settings.data_dir) / "exports"
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.runner = Runner(store, gate, search, self.jobs, config, self.root, owner)
        self.dispatcher: Dispatcher = self._dispatcher(settings)
        self._sweeper: asyncio.Task[None] | None = None

    def _dispatcher(self, settings: Settings) -> Dispatcher:
        if self.store.dialect == "postgresql":
            _, dsn = normalize_url(settings.database_url)
            return PgQueuerDispatcher(self.store.db.pool, dsn, self.runner.run, self.config.workers,  # type: ignore[attr-defined]
                                      timedelta(seconds=self.config.lease_seconds))
        return InProcessDispatcher(self.runner.run, self.config.workers)

    @classmethod
    async def start(cls, store: Store, gate: Gate, search: SearchEngine, settings: Settings,
                    config: ExportSettings | None = None) -> Exports:
        exports = cls(store, gate, search, settings, config or ExportSettings())
        exports.root.mkdir(parents=True, exist_ok=True)
        await exports.dispatcher.start()
        exports._sweeper = asyncio.create_task(exports._sweep_forever())
        return exports

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.dispatcher.stop()

    async def _sweep_forever(self) -> None:
        interval = max(0.2, self.config.lease_seconds / 2)
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("export sweep failed; trying again")
            await asyncio.sleep(interval)

    async def sweep(self) -> None:
        for job_id in await self.jobs.claimable():
            await self.dispatcher.submit(job_id)
        for job_id in await self.jobs.expired():
            shutil.rmtree(self.root / job_id, ignore_errors=True)
            await self.jobs.delete(job_id)

    async def _group_members(self, principal: Principal, group_id: str) -> list[str]:
        """The cohort's members; 404 for a Group the principal may not see (its existence is not disclosed)."""
        stored = await self.store.read("Group", group_id)
        if stored is None or stored.deleted or await self.gate.disclose(principal, stored) is None:
            raise FhirError.of(404, "not-found", f"Group/{group_id} is not known")
        return _members(stored.json())

    async def kick_off(self, principal: Principal, request: ExportRequest) -> Job:
        """Accept an export: every `_typeFilter` is compiled once here, so a bad one is a 400 now
        rather than a failed job later. Raises TooManyJobs when the client runs too many."""
        restriction = self.gate.restrict(principal, READ)
        for type_ in request.types:
            select(self.search, "", request, type_, principal, restriction)
        members: list[str] | None = None
        if request.group_id is not None:
            members = await self._group_members(principal, request.group_id)
            if request.patients is not None:
                members = sorted(set(members) & set(request.patients))
        elif request.patients is not None:
            members = list(request.patients)
        job = await self.jobs.create(uuid.uuid4().hex, principal, request, members,
                                     self.config.max_jobs_per_client)
        await self.dispatcher.submit(job.id)
        return job

    async def job_of(self, principal: Principal, job_id: str) -> Job:
        """The job, for its own client only: to anyone else it does not exist."""
        job = await self.jobs.get(job_id)
        if job is None or job.client_id != principal.client_id:
            raise _not_found(job_id)
        if job.status == "cancelled":
            raise _not_found(job_id, "was cancelled")
        return job

    async def cancel(self, principal: Principal, job_id: str) -> None:
        job = await self.job_of(principal, job_id)
        async with self.store.transaction() as tx:
            cancelled = job.status != "failed" and await self.jobs.cancel(tx.conn, job_id, now_us())
            if cancelled:
                await tx.create(audit.audit_event(job, [], "4", f"export cancelled by {principal.client_id}"))
        if not cancelled:
            raise _not_found(job_id, f"cannot be cancelled: it has {job.status}")
        if job.status != "in-progress":  # a running job's worker removes its folder when it notices
            shutil.rmtree(self.root / job_id, ignore_errors=True)

    async def files(self, job: Job) -> list[ExportFile]:
        return await self.jobs.files(job.id)

    async def file_path(self, principal: Principal, job_id: str, name: str) -> Path:
        job = await self.job_of(principal, job_id)
        if job.status != "completed" or not any(f.name == name for f in await self.jobs.files(job_id)):
            raise FhirError.of(404, "not-found", f"export job {job_id} has no file {name!r}")
        return self.root / job_id / name

    def status_url(self, job: Job) -> str:
        return f"{self.base}/$export-status/{job.id}"

    def manifest(self, job: Job, files: list[ExportFile]) -> dict[str, Any]:
        """The completion manifest (Bulk Data IG v2, "Response - Complete Status")."""

        def entry(f: ExportFile) -> dict[str, Any]:
            return {"type": f.type, "url": f"{self.base}/$export-file/{job.id}/{f.name}", "count": f.count}

        return {
            "transactionTime": to_instant(job.transaction_time),
            "request": job.request.url,
            "requiresAccessToken": True,
            "output": [entry(f) for f in files if f.kind == "output"],
            "error": [entry(f) for f in files if f.kind == "error"],
        }

    def progress(self, job: Job) -> str:
        state = "queued" if job.status == "accepted" else "in progress"
        return f"{state}: {job.written} resources written"
