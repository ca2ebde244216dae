"""AuditEvent for each access (FHIR R4 AuditEvent, in the style of IHE BALP).

Two steps, so that a read pays microseconds for its audit record, not a second FHIR write:

1. `record` keeps a compact row in memory; every `flush_every` seconds the rows are appended
   to the `audit_queue` table in one statement. From there the record is durable (a crash
   loses at most `flush_every` seconds of accesses; shutdown writes the rest).
2. `materialise` turns queued rows into AuditEvent resources (JSON, versions, search index)
   and removes them from the queue in the same transaction, so each access becomes exactly
   one AuditEvent. It runs in the background while the gateway is idle, and one batch per
   `flush_every` once the backlog passes `backlog` rows (more would stall requests); and on
   demand (`catch_up`) before any request that can return AuditEvents, so an auditor never
   searches an incomplete trail.

AuditEvents are read by internal auditors only (the gate hides them from external principals).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.fhir.instant import now_us, to_instant
from gateway.store import Store
from gateway.store.database import Row
from gateway.store.resources import new_id

log = structlog.get_logger("gateway.audit")

CLIENT_SYSTEM = "https://biobank.massgeneral.org/fhir/sid/client"
MAX_PENDING = 100_000
"""Accesses kept in memory while the database refuses them; beyond that the oldest are dropped (and logged)."""
MAX_ENTITIES = 200
"""Released resources named one by one in an AuditEvent; beyond that only their number."""
ACTIONS = {"create": "C", "update": "U", "delete": "D", "read": "R", "vread": "R", "search": "E", "operation": "E"}


@dataclass
class Access:
    """What one request did, collected while it ran."""

    client_id: str
    audience: str
    interaction: str
    method: str
    path: str
    query: str
    status: int = 0
    released: list[str] = field(default_factory=list)
    address: str | None = None
    released_count: int | None = None
    """How many resources were released when `released` was capped (None: len(released))."""


def _count(access: Access) -> int:
    return len(access.released) if access.released_count is None else access.released_count


def _action(interaction: str, method: str) -> str:
    for key, code in ACTIONS.items():
        if interaction.startswith(key):
            return code
    return {"GET": "R", "POST": "C", "PUT": "U", "DELETE": "D"}.get(method, "E")


def audit_event(access: Access, at_us: int) -> dict[str, Any]:
    """The AuditEvent resource describing `access`."""
    outcome = "0" if access.status < 400 else ("4" if access.status < 500 else "8")
    entities: list[dict[str, Any]] = [
        {"what": {"reference": ref}, "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                              "code": "2", "display": "System Object"}}
        for ref in access.released[:MAX_ENTITIES]
    ]
    query = access.path + (f"?{access.query}" if access.query else "")
    entities.append({"type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
                     "query": base64.b64encode(query.encode()).decode(),
                     "description": f"{_count(access)} resources released"})
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                             "code": "IRCP", "display": "information recipient"}]},
        "who": {"identifier": {"system": CLIENT_SYSTEM, "value": access.client_id}},
        "role": [{"text": f"{access.audience} principal"}],
        "requestor": True,
    }
    if access.address:
        agent["network"] = {"address": access.address, "type": "2"}
    return {
        "resourceType": "AuditEvent", "id": new_id(),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                 "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": access.interaction}],
        "action": _action(access.interaction, access.method),
        "recorded": to_instant(at_us),
        "outcome": outcome,
        "outcomeDesc": f"HTTP {access.status}",
        "agent": [agent],
        "source": {"observer": {"display": "biobank-gateway"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                             "display": "Application Server"}]},
        "entity": entities,
    }


_COLUMNS = ("recorded_us", "client_id", "audience", "interaction", "method", "path", "query", "status", "released",
            "released_count", "address")
_QUEUE_COLUMNS = ", ".join(_COLUMNS)


def _queued(access: Access, at_us: int) -> tuple[object, ...]:
    return (at_us, access.client_id, access.audience, access.interaction, access.method, access.path,
            access.query, access.status, " ".join(access.released[:MAX_ENTITIES]), len(access.released),
            access.address)


def _event_of(row: Row) -> dict[str, Any]:
    """The AuditEvent of one `audit_queue` row (columns: seq, then `_QUEUE_COLUMNS`)."""
    (_, at_us, client_id, audience, interaction, method, path, query, status, released, count, address) = row
    access = Access(client_id, audience, interaction, method, path, query, status,
                    released.split() if released else [], address, count)
    return audit_event(access, at_us)


class AuditLog:
    """The two steps above, and the background task that drives them."""

    def __init__(self, store: Store, flush_every: float = 0.5, batch: int = 50, idle_after: float = 1.0,
                 backlog: int = 50_000) -> None:
        self.store = store
        self.flush_every = flush_every
        self.batch = batch
        self.idle_after = idle_after
        self.backlog = backlog
        self._rows: list[tuple[object, ...]] = []
        self._queued = 0
        self._last_record = float("-inf")
        self._task: asyncio.Task[None] | None = None

    def record(self, access: Access) -> None:
        self._rows.append(_queued(access, now_us()))
        self._last_record = time.monotonic()

    async def start(self) -> None:
        row = await self.store.db.fetchone("SELECT COUNT(*) FROM audit_queue")
        self._queued = int(row[0]) if row else 0
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_every)
            try:
                await self.write()
                if self._queued > self.backlog and not self._idle():
                    await self.materialise()  # busy: one batch a tick, so the backlog cannot stall requests
                while self._queued and self._idle() and await self.materialise():
                    await asyncio.sleep(0)  # requests arriving meanwhile go first
            except Exception:  # the audit writer must outlive a failing database; rows stay queued
                log.exception("audit trail not written", pending=len(self._rows), queued=self._queued)

    def _idle(self) -> bool:
        return time.monotonic() - self._last_record > self.idle_after

    async def write(self) -> int:
        """Append the accesses recorded in memory to `audit_queue` (one statement: COPY on PostgreSQL, 3-4 us of
        backend CPU a row where INSERTs took 8-10 us, on every request of a busy gateway)."""
        rows, self._rows = self._rows, []
        if not rows:
            return 0
        try:
            async with self.store.db.transaction() as conn:
                await conn.append("audit_queue", _COLUMNS, rows)
        except BaseException:
            self._rows[:0] = rows  # kept for the next attempt, the newest MAX_PENDING while the database is down
            if (dropped := len(self._rows) - MAX_PENDING) > 0:
                del self._rows[:dropped]
                log.error("audit records dropped: the database refused them too long", dropped=dropped)
            raise
        self._queued += len(rows)
        return len(rows)

    async def materialise(self) -> int:
        """Turn up to `batch` queued rows into AuditEvents; several instances never take the same rows."""
        lock = " FOR UPDATE SKIP LOCKED" if self.store.dialect == "postgresql" else ""
        async with self.store.transaction() as tx:
            if self.store.dialect == "postgresql":
                # No flush to disk per batch (it was a third of the time): the accesses are durable in
                # the queue already, and a crash that undoes this commit undoes the queue rows' deletion
                # with it, so they are materialised again — nothing lost, nothing doubled.
                await tx.conn.execute("SET LOCAL synchronous_commit TO OFF")
            rows = await tx.conn.fetchall(f"SELECT seq, {_QUEUE_COLUMNS} FROM audit_queue ORDER BY seq LIMIT ?{lock}",
                                          (self.batch,))
            if rows:
                await tx.put_many([_event_of(row) for row in rows])
                await tx.conn.execute(f"DELETE FROM audit_queue WHERE seq IN ({', '.join('?' * len(rows))})",
                                      [row[0] for row in rows])
        self._queued = max(0, self._queued - len(rows))
        return len(rows)

    async def catch_up(self) -> None:
        """Every access recorded so far becomes an AuditEvent (before a request that can return them)."""
        await self.write()
        while await self.materialise():
            pass

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.write()
