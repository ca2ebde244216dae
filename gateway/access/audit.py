"""AuditEvent for each access (FHIR R4 AuditEvent, in the style of IHE BALP).

Events are queued in memory and written by a background task in batches, so a read is not
slowed by a second write. A crash may lose the last batch (at most `flush_every` seconds of
events); the queue is flushed on graceful shutdown. AuditEvents are read by internal
auditors only (the gate hides them from external principals).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.fhir.instant import now_us, to_instant
from gateway.store import Store
from gateway.store.resources import new_id

log = structlog.get_logger("gateway.audit")

CLIENT_SYSTEM = "https://biobank.massgeneral.org/fhir/sid/client"
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
        for ref in access.released[:200]
    ]
    query = access.path + (f"?{access.query}" if access.query else "")
    entities.append({"type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
                     "query": base64.b64encode(query.encode()).decode(),
                     "description": f"{len(access.released)} resources released"})
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


class AuditLog:
    """Queue + background writer."""

    def __init__(self, store: Store, flush_every: float = 0.5, batch: int = 50) -> None:
        self.store = store
        self.flush_every = flush_every
        self.batch = batch
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def record(self, access: Access) -> None:
        self._queue.put_nowait(audit_event(access, now_us()))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_every)
            await self.flush()

    async def flush(self) -> int:
        written = 0
        while not self._queue.empty():
            events = [self._queue.get_nowait() for _ in range(min(self.batch, self._queue.qsize()))]
            try:
                await self.store.put_many(events)
                written += len(events)
            except Exception:  # the audit writer must outlive a failing database; the events are logged
                log.exception("audit events not written", count=len(events))
            await asyncio.sleep(0)  # small batches, yielding between them: SQLite writes block the loop
        return written

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
