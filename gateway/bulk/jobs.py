"""Export jobs as rows: created at kick-off, claimed by one worker at a time with a lease.

A worker holds a job while `lease_until` is in the future and renews it with every page it
writes; every write it makes is conditional on still holding it (`owner = ?` and status
in-progress), so a cancelled job or one taken over after an expired lease stops its old
worker at the next page. A job whose worker died is claimable again once its lease ends,
and `attempts` bounds how often: a job that keeps killing its workers is failed, not retried forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from gateway.access.principal import Principal
from gateway.access.scopes import Scopes
from gateway.bulk.request import ExportRequest
from gateway.fhir.instant import now_us
from gateway.store.database import Connection, Database, Row

Status = Literal["accepted", "in-progress", "completed", "failed", "cancelled"]

_JOB_COLS = ("id, client_id, status, request, principal, transaction_time, updated, owner, lease_until, attempts, "
             "written, error, expires_at")
_FILE_COLS = "name, kind, type, part, count, last_id"
_HELD = "id = ? AND owner = ? AND status = 'in-progress'"


class TooManyJobs(Exception):
    """The client already runs as many jobs as it may (the kick-off answers 429)."""


@dataclass(frozen=True, slots=True)
class ExportFile:
    name: str
    kind: Literal["output", "error"]
    type: str
    part: int
    count: int
    last_id: str


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    client_id: str
    status: Status
    request: ExportRequest
    principal: Principal
    transaction_time: int
    updated: int
    owner: str | None
    lease_until: int
    attempts: int
    written: int
    error: str | None
    expires_at: int | None

    @property
    def active(self) -> bool:
        return self.status in ("accepted", "in-progress")


def principal_json(principal: Principal) -> bytes:
    return orjson.dumps({"client_id": principal.client_id, "audience": principal.audience,
                         "scopes": str(principal.scopes), "patient": principal.patient,
                         "commercial": principal.commercial})


def principal_of(text: str | bytes) -> Principal:
    data: dict[str, Any] = orjson.loads(text)
    return Principal(data["client_id"], data["audience"], Scopes.parse(data["scopes"]), patient=data["patient"],
                     commercial=data["commercial"])


def _job(row: Row) -> Job:
    return Job(row[0], row[1], row[2], ExportRequest.from_json(orjson.loads(row[3])), principal_of(row[4]),
               row[5], row[6], row[7], row[8], row[9], row[10], row[11], row[12])


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, job_id: str, principal: Principal, request: ExportRequest, members: list[str] | None,
                     max_active: int) -> Job:
        """Insert a job (and the Patients it covers) unless its client already runs `max_active` jobs.
        Counting and inserting share one transaction, serialised per client, so two kick-offs
        racing each other cannot both slip under the limit."""
        now = now_us()
        async with self.db.transaction() as tx:
            if self.db.dialect == "postgresql":
                await tx.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"bulk:{principal.client_id}",))
            row = await tx.fetchone("SELECT COUNT(*) FROM bulk_jobs WHERE client_id = ? AND status IN "
                                    "('accepted', 'in-progress')", (principal.client_id,))
            if row is not None and row[0] >= max_active:
                raise TooManyJobs(principal.client_id)
            await tx.execute(
                f"INSERT INTO bulk_jobs ({_JOB_COLS}) VALUES (?, ?, 'accepted', ?, ?, ?, ?, NULL, 0, 0, 0, NULL, NULL)",
                (job_id, principal.client_id, orjson.dumps(request.to_json()).decode(),
                 principal_json(principal).decode(), now, now))
            if members:
                await tx.executemany("INSERT INTO bulk_members (job_id, patient) VALUES (?, ?)",
                                     [(job_id, p) for p in members])
        job = await self.get(job_id)
        assert job is not None
        return job

    async def get(self, job_id: str) -> Job | None:
        row = await self.db.fetchone(f"SELECT {_JOB_COLS} FROM bulk_jobs WHERE id = ?", (job_id,))
        return _job(row) if row else None

    async def files(self, job_id: str) -> list[ExportFile]:
        rows = await self.db.fetchall(f"SELECT {_FILE_COLS} FROM bulk_files WHERE job_id = ? ORDER BY kind DESC, "
                                      "type, part", (job_id,))
        return [ExportFile(*r) for r in rows]

    async def claimable(self) -> list[str]:
        """Jobs nobody works on: waiting to start, or in progress under an expired lease."""
        rows = await self.db.fetchall(
            "SELECT id FROM bulk_jobs WHERE status = 'accepted' OR (status = 'in-progress' AND lease_until < ?) "
            "ORDER BY transaction_time", (now_us(),))
        return [r[0] for r in rows]

    async def claim(self, job_id: str, owner: str, lease_us: int) -> Job | None:
        """Take the job for `owner` when nobody holds it; None when someone does or it is over."""
        now = now_us()
        async with self.db.transaction() as tx:
            moved = await tx.execute(
                "UPDATE bulk_jobs SET status = 'in-progress', owner = ?, lease_until = ?, attempts = attempts + 1, "
                "updated = ? WHERE id = ? AND (status = 'accepted' OR (status = 'in-progress' AND lease_until < ?))",
                (owner, now + lease_us, now, job_id, now))
        return await self.get(job_id) if moved == 1 else None

    async def renew(self, job_id: str, owner: str, lease_us: int, written: int) -> bool:
        """Extend the lease and record progress; False when the job was cancelled or taken over."""
        now = now_us()
        async with self.db.transaction() as tx:
            moved = await tx.execute(f"UPDATE bulk_jobs SET lease_until = ?, written = ?, updated = ? WHERE {_HELD}",
                                     (now + lease_us, written, now, job_id, owner))
        return moved == 1

    async def add_file(self, job_id: str, owner: str, file: ExportFile, lease_us: int, written: int) -> bool:
        """Record a finished file (the resume point) together with the lease renewal."""
        now = now_us()
        async with self.db.transaction() as tx:
            moved = await tx.execute(f"UPDATE bulk_jobs SET lease_until = ?, written = ?, updated = ? WHERE {_HELD}",
                                     (now + lease_us, written, now, job_id, owner))
            if moved != 1:
                return False
            await tx.execute("DELETE FROM bulk_files WHERE job_id = ? AND name = ?", (job_id, file.name))
            await tx.execute(f"INSERT INTO bulk_files (job_id, {_FILE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (job_id, file.name, file.kind, file.type, file.part, file.count, file.last_id))
        return True

    async def finish(self, tx: Connection, job_id: str, owner: str, status: Status, expires_at: int,
                     error: str | None = None) -> bool:
        """End a held job, inside the caller's transaction (which also writes the job's AuditEvent)."""
        moved = await tx.execute(
            "UPDATE bulk_jobs SET status = ?, error = ?, expires_at = ?, lease_until = 0, updated = ? "
            f"WHERE {_HELD}", (status, error, expires_at, now_us(), job_id, owner))
        return moved == 1

    async def release(self, job_id: str, owner: str) -> None:
        """Give the job back at once (this instance is stopping): the next claimant need not wait for the lease."""
        async with self.db.transaction() as tx:
            await tx.execute(f"UPDATE bulk_jobs SET lease_until = 0, attempts = attempts - 1 WHERE {_HELD}",
                             (job_id, owner))

    async def cancel(self, tx: Connection, job_id: str, expires_at: int) -> bool:
        """Cancel a job that is not over yet, or withdraw a completed one (inside the caller's
        transaction); False when there is nothing to cancel."""
        moved = await tx.execute(
            "UPDATE bulk_jobs SET status = 'cancelled', lease_until = 0, expires_at = ?, updated = ? "
            "WHERE id = ? AND status IN ('accepted', 'in-progress', 'completed')", (expires_at, now_us(), job_id))
        if moved == 1:
            await tx.execute("DELETE FROM bulk_files WHERE job_id = ?", (job_id,))
        return moved == 1

    async def expired(self) -> list[str]:
        rows = await self.db.fetchall("SELECT id FROM bulk_jobs WHERE expires_at IS NOT NULL AND expires_at < ?",
                                      (now_us(),))
        return [r[0] for r in rows]

    async def delete(self, job_id: str) -> None:
        async with self.db.transaction() as tx:
            for table in ("bulk_files", "bulk_members", "bulk_jobs"):
                column = "id" if table == "bulk_jobs" else "job_id"
                await tx.execute(f"DELETE FROM {table} WHERE {column} = ?", (job_id,))
