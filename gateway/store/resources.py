"""Versioned resource storage: every write makes an immutable version, reads send bytes.

A write inserts into `resource_versions` and moves the `resources` row forward with
`UPDATE ... WHERE version = <the version read>` — optimistic locking: of two concurrent
writers exactly one moves the row, the other sees 0 rows and gets a conflict, so no
version is ever lost. Index maintenance (search) runs as write hooks inside the same
transaction, so a resource and its index rows commit together or not at all.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from gateway.fhir.compartment import patient_of
from gateway.fhir.instant import now_us, to_instant
from gateway.observability import metrics
from gateway.store.database import Connection, Database, IntegrityError, Row, open_database
from gateway.store.index import Indexer, TableRows, indexer
from gateway.store.index import prepare as prepare_index
from gateway.store.migrate import migrate
from gateway.store.points import PointReads

_COLS = "type, id, version, ts, deleted, compartment, content"


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as stored: the JSON bytes plus what the store indexes."""

    type: str
    id: str
    version: int
    ts: int
    deleted: bool
    compartment: str | None
    content: bytes
    method: str = ""

    @property
    def version_id(self) -> str:
        return str(self.version)

    def json(self) -> dict[str, Any]:
        return orjson.loads(self.content)


@dataclass(frozen=True, slots=True)
class PutResult:
    outcome: Literal["created", "updated", "unchanged"]
    type: str
    id: str
    version_id: str


class VersionConflict(Exception):
    """The resource moved on since it was read (optimistic lock lost), or `If-Match` named another version."""

    def __init__(self, type_: str, id_: str, expected: int | None, current: int | None) -> None:
        super().__init__(f"{type_}/{id_}: expected version {expected}, current is {current}")
        self.expected, self.current = expected, current


WriteHook = Callable[[Connection, StoredResource, "dict[str, Any] | None"], Awaitable[None]]


def _row(row: Sequence[Any], method: str = "") -> StoredResource:
    return StoredResource(row[0], row[1], row[2], row[3], bool(row[4]), row[5], bytes(row[6]), method)


def _without_version_meta(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    out = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        out["meta"] = meta
    return out


def new_id() -> str:
    """A server-assigned id: a UUIDv7 (RFC 9562), whose first 48 bits are the time in ms and the
    other 74 random. Time-ordered ids land at the end of the primary-key and search-index B-trees
    rather than on a random page each, so a batch of creates (AuditEvents above all) dirties a few
    pages instead of one per row. The creation time it shows is the resource's lastUpdated anyway."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = ((time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64
             | 0b10 << 62 | rand & (1 << 62) - 1)
    return str(uuid.UUID(int=value))


class Transaction:
    """The writes of one database transaction: a REST interaction, a Bundle, an ingest batch."""

    def __init__(self, conn: Connection, hooks: Sequence[WriteHook], dialect: str = "sqlite") -> None:
        self.conn = conn
        self._hooks = hooks
        self.dialect = dialect

    async def current(self, type_: str, id_: str) -> StoredResource | None:
        row = await self.conn.fetchone(f"SELECT {_COLS} FROM resources WHERE type = ? AND id = ?", (type_, id_))
        return _row(row) if row else None

    def _prepare(self, prev: StoredResource | None, resource: dict[str, Any], deleted: bool,
                 method: str) -> tuple[StoredResource, dict[str, Any] | None]:
        """The next version of a resource (not yet written) and the JSON the hooks see."""
        type_, id_ = resource["resourceType"], resource["id"]
        version = (prev.version + 1) if prev else 1
        ts = max(now_us(), prev.ts + 1) if prev else now_us()
        meta = {**(resource.get("meta") or {}), "versionId": str(version), "lastUpdated": to_instant(ts)}
        body = {"resourceType": type_, "id": id_, "meta": meta}
        body.update((k, v) for k, v in resource.items() if k not in body)
        if deleted:
            body = {"resourceType": type_, "id": id_,
                    "meta": {"versionId": str(version), "lastUpdated": meta["lastUpdated"]}}
        compartment = prev.compartment if deleted and prev else patient_of(body)
        stored = StoredResource(type_, id_, version, ts, deleted, compartment, orjson.dumps(body), method)
        return stored, None if deleted else body

    async def _write(self, prev: StoredResource | None, resource: dict[str, Any], deleted: bool,
                     method: str) -> StoredResource:
        stored, body = self._prepare(prev, resource, deleted, method)
        if prev is None:
            await self._insert([stored])
        else:
            moved = await self.conn.execute(
                "UPDATE resources SET version = ?, ts = ?, deleted = ?, compartment = ?, content = ? "
                "WHERE type = ? AND id = ? AND version = ?",
                (*_current_values(stored), prev.version),
            )
            if moved != 1:
                raise VersionConflict(stored.type, stored.id, prev.version, None)
        await self._versions_and_hooks([(stored, body)])
        return stored

    async def _insert(self, created: Sequence[StoredResource]) -> None:
        try:
            await self.conn.executemany(
                f"INSERT INTO resources ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(s.type, s.id, s.version, s.ts, s.deleted, s.compartment, s.content) for s in created])
        except IntegrityError as exc:
            first = created[0]
            raise VersionConflict(first.type, first.id, None, -1) from exc

    async def _versions_and_hooks(self, written: Sequence[tuple[StoredResource, dict[str, Any] | None]],
                                  extracted: Sequence[TableRows | None] | None = None) -> None:
        await self.conn.executemany(
            f"INSERT INTO resource_versions ({_COLS}, method) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(s.type, s.id, s.version, s.ts, s.deleted, s.compartment, s.content, s.method) for s, _ in written])
        for hook in self._hooks:
            if extracted is not None and isinstance(hook, Indexer):
                await hook.many(self.conn, written, extracted)
                continue
            many = getattr(hook, "many", None)
            if many is not None:
                await many(self.conn, written)
            else:
                for stored, body in written:
                    await hook(self.conn, stored, body)

    async def create(self, resource: dict[str, Any], id_: str | None = None) -> StoredResource:
        """A new resource with a server-assigned id (any client id is replaced, as FHIR create says);
        `id_` is for ids the server assigned earlier (transaction entries resolved from urn:uuid)."""
        return await self._write(None, {**resource, "id": id_ or new_id()}, False, "POST")

    async def update(self, resource: dict[str, Any], if_match: int | None = None) -> tuple[StoredResource, bool]:
        """Update, or create with the client's id when absent. Returns (stored, created)."""
        prev = await self.current(resource["resourceType"], resource["id"])
        if if_match is not None and (prev is None or prev.version != if_match):
            raise VersionConflict(resource["resourceType"], resource["id"], if_match, prev.version if prev else None)
        return await self._write(prev, resource, False, "PUT"), prev is None or prev.deleted

    async def delete(self, type_: str, id_: str, if_match: int | None = None) -> StoredResource | None:
        """Soft delete: a new version flagged deleted. None when there was nothing to delete."""
        prev = await self.current(type_, id_)
        if if_match is not None and (prev is None or prev.version != if_match):
            raise VersionConflict(type_, id_, if_match, prev.version if prev else None)
        if prev is None or prev.deleted:
            return None
        return await self._write(prev, {"resourceType": type_, "id": id_}, True, "DELETE")

    async def put(self, resource: dict[str, Any]) -> PutResult:
        """Idempotent upsert for loads: no new version when only meta.versionId/lastUpdated differ."""
        prev = await self.current(resource["resourceType"], resource["id"])
        return await self._put(prev, resource)

    async def _put(self, prev: StoredResource | None, resource: dict[str, Any]) -> PutResult:
        type_, id_ = resource["resourceType"], resource["id"]
        if prev is not None and not prev.deleted and (
            _without_version_meta(orjson.loads(prev.content)) == _without_version_meta(resource)
        ):
            return PutResult("unchanged", type_, id_, prev.version_id)
        stored = await self._write(prev, resource, False, "PUT")
        return PutResult("updated" if prev else "created", type_, id_, stored.version_id)

    async def put_many(self, resources: Iterable[dict[str, Any]],
                       index: Sequence[TableRows | None] | None = None) -> list[PutResult]:
        """`put` for a batch, with a handful of statements instead of several per resource.

        The current rows are read first and locked (`FOR UPDATE` on PostgreSQL; SQLite holds the
        write lock for the whole transaction), so the updates cannot lose a race; a concurrent
        creator of the same id makes the insert fail and the batch raises VersionConflict.
        A batch naming one id twice is written one resource at a time.
        `index[i]`: the search index rows of `resources[i]` when computed ahead (`Indexer.many`).
        """
        items = list(resources)
        ahead = list(index) if index is not None else [None] * len(items)
        keys = [(r["resourceType"], r["id"]) for r in items]
        if len(set(keys)) != len(keys):
            return [await self.put(r) for r in items]
        prev = await self._current_many(keys)
        results: list[PutResult] = []
        created: list[StoredResource] = []
        updated: list[StoredResource] = []
        written: list[tuple[StoredResource, dict[str, Any] | None]] = []
        extracted: list[TableRows | None] = []
        for key, resource, rows in zip(keys, items, ahead, strict=True):
            before = prev.get(key)
            if before is not None and not before.deleted and (
                    _without_version_meta(orjson.loads(before.content)) == _without_version_meta(resource)):
                results.append(PutResult("unchanged", key[0], key[1], before.version_id))
                continue
            stored, body = self._prepare(before, resource, False, "PUT")
            (updated if before else created).append(stored)
            written.append((stored, body))
            extracted.append(rows)
            results.append(PutResult("updated" if before else "created", key[0], key[1], stored.version_id))
        if created:
            await self._insert(created)
        if updated:
            await self.conn.executemany(
                "UPDATE resources SET version = ?, ts = ?, deleted = ?, compartment = ?, content = ? "
                "WHERE type = ? AND id = ?", [_current_values(s) for s in updated])
        if written:
            await self._versions_and_hooks(written, extracted)
        return results

    async def _current_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredResource]:
        by_type: dict[str, list[str]] = {}
        for type_, id_ in keys:
            by_type.setdefault(type_, []).append(id_)
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        found: dict[tuple[str, str], StoredResource] = {}
        for type_, ids in by_type.items():
            for chunk in _chunks(sorted(set(ids)), 500):
                marks = ",".join("?" * len(chunk))
                rows = await self.conn.fetchall(
                    f"SELECT {_COLS} FROM resources WHERE type = ? AND id IN ({marks}) ORDER BY id{lock}",
                    (type_, *chunk))
                found.update(((r[0], r[1]), _row(r)) for r in rows)
        return found


def _current_values(s: StoredResource) -> tuple[Any, ...]:
    """UPDATE resources SET version, ts, deleted, compartment, content WHERE type, id."""
    return (s.version, s.ts, s.deleted, s.compartment, s.content, s.type, s.id)


def _chunks(seq: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


class Store:
    """The gateway's resources on SQLite or PostgreSQL (see database.py for why raw drivers)."""

    def __init__(self, db: Database, hooks: list[WriteHook] | None = None) -> None:
        """`hooks` run inside every write transaction; by default the search indexer, so every
        write (REST, Bundles, bulk loads) keeps the search index current."""
        self.db = db
        self.hooks: list[WriteHook] = [indexer(dialect=db.dialect)] if hooks is None else hooks
        self._points = PointReads(self._read_one, self._read_many, db.point_slots) if db.point_slots else None

    @classmethod
    async def open(cls, url: str) -> Store:
        db = await open_database(url)
        await migrate(db)
        await prepare_index(db)
        return cls(db)

    async def close(self) -> None:
        await self.db.close()

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self.db.transaction() as conn:
            yield Transaction(conn, self.hooks, self.dialect)

    async def read(self, type_: str, id_: str) -> StoredResource | None:
        started = time.perf_counter()
        row = await (self._points.read(type_, id_) if self._points else self._read_one(type_, id_))
        metrics.store_latency("read", time.perf_counter() - started)
        return _row(row) if row else None

    async def _read_one(self, type_: str, id_: str) -> Row | None:
        return await self.db.fetch_point(f"SELECT {_COLS} FROM resources WHERE type = ? AND id = ?", (type_, id_))

    async def _read_many(self, types: list[str], ids: list[str]) -> list[Row]:
        """Current rows of (type, id) pairs, in one statement (PostgreSQL arrays: a generic plan that
        probes the primary key once per pair)."""
        return await self.db.fetch_points(
            f"SELECT {_COLS} FROM resources WHERE (type, id) IN (SELECT * FROM unnest(?::text[], ?::text[]))",
            (types, ids))

    async def read_bytes(self, type_: str, id_: str) -> bytes | None:
        found = await self.read(type_, id_)
        return None if found is None or found.deleted else found.content

    async def vread(self, type_: str, id_: str, version: int) -> StoredResource | None:
        row = await self.db.fetch_point(
            f"SELECT {_COLS}, method FROM resource_versions WHERE type = ? AND id = ? AND version = ?",
            (type_, id_, version),
        )
        return _row(row, row[7]) if row else None

    async def select(self, type_: str, condition: str, params: Sequence[Any] = ()) -> list[StoredResource]:
        """Current, not deleted resources of `type_` matching an SQL `condition` on the `resources`
        columns (`?` placeholders) — for operations that query derived tables such as `consent_state`."""
        rows = await self.db.fetchall(
            f"SELECT {_COLS} FROM resources WHERE type = ? AND deleted = ? AND ({condition}) ORDER BY id",
            (type_, False, *params))
        return [_row(r) for r in rows]

    async def existing_ids(self, type_: str, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            rows = await self.db.fetchall(
                f"SELECT id FROM resources WHERE type = ? AND deleted = ? AND id IN ({marks})", (type_, False, *chunk)
            )
            found.update(r[0] for r in rows)
        return found

    async def put_many(self, resources: Iterable[dict[str, Any]],
                       index: Sequence[TableRows | None] | None = None) -> list[PutResult]:
        async with self.transaction() as tx:
            return await tx.put_many(resources, index)

    async def history(self, types: Sequence[str] | None, id_: str | None, since_us: int | None, before_seq: int | None,
                      count: int, compartments: Sequence[str] | None = None
                      ) -> tuple[list[StoredResource], list[int]]:
        """Versions newest first, keyset-paged on the version sequence (`before_seq` = last seq seen).

        `compartments` restricts to resources of those patients (patient/ scopes) — the
        restriction is in the query so a page never carries what the principal may not see.
        """
        where, params = _history_filter(types, id_, since_us, compartments)
        if before_seq is not None:
            where.append("seq < ?")
            params.append(before_seq)
        sql = (f"SELECT {_COLS}, method, seq FROM resource_versions"
               f"{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY seq DESC LIMIT ?")
        rows = await self.db.fetchall(sql, (*params, count))
        return [_row(r, r[7]) for r in rows], [r[8] for r in rows]

    async def history_count(self, types: Sequence[str] | None, id_: str | None, since_us: int | None,
                            compartments: Sequence[str] | None = None) -> int:
        where, params = _history_filter(types, id_, since_us, compartments)
        sql = f"SELECT COUNT(*) FROM resource_versions{' WHERE ' + ' AND '.join(where) if where else ''}"
        row = await self.db.fetchone(sql, params)
        return int(row[0]) if row else 0


def _in(column: str, values: Sequence[Any]) -> str:
    return f"{column} IN ({','.join('?' * len(values))})" if values else "1 = 0"


def _history_filter(types: Sequence[str] | None, id_: str | None, since_us: int | None,
                    compartments: Sequence[str] | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if types is not None:
        where.append(_in("type", types))
        params.extend(types)
    if id_ is not None:
        where.append("id = ?")
        params.append(id_)
    if since_us is not None:
        where.append("ts >= ?")
        params.append(since_us)
    if compartments is not None:
        patients = sorted(compartments)
        where.append(_in("compartment", patients))
        params.extend(patients)
    return where, params
