"""A load: source rows -> mapped, validated FHIR -> the store, in atomic batches -> a report.

Two passes over the source, both streaming. The first (scan.py) keeps only what the rules
need from other records. The second cuts the rows into jobs that are mapped, validated and
index-extracted on worker processes (prepare.py, workers.py) and takes their outcomes back
in file order; the rules that depend on order are applied here, in the loading process:
references, inheritance, derived resources written once, cohorts. Batches are written with
`Store.put_many`, each with the index rows the workers extracted.

Why this converges after a kill -9: every batch is one transaction, ids derive from source
ids, and an unchanged resource gets no new version — so re-running writes the same content
again, finishing what was not committed. The cohort Groups and the Provenance are written
last and derive only from the rows and the store, never from the clock: a re-run, or the
same export loaded twice, produces them identically. A reference resolves when its target
was accepted earlier in this load or exists in the store; when the target row is still to
come the row waits for it (in memory: forward references are few), and is rejected when
that target is rejected or never comes.

Why memory stays flat whatever the export's size: what the load must remember about every
row (keys, carried values, accepted and rejected ids, inherited values, cohort members) is
in a scratch SQLite file (scratch.py), rows travel in jobs and batches of a fixed size, and
the Provenance is written in parts of at most PROVENANCE_TARGETS targets, read in order
from the scratch, one part at a time.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from gateway.ingest.mapping import LOAD_ORDER, MAPPINGS_DIR, Mappings, RecordMapping, load_mappings
from gateway.ingest.prepare import Context, Job, Mapped, Prepared, Rejected, Validator, default_validator
from gateway.ingest.report import LoadReport
from gateway.ingest.scan import Index, included, scan
from gateway.ingest.scratch import Scratch
from gateway.ingest.sources import Table, open_source
from gateway.ingest.statistics import Statistics
from gateway.ingest.template import Node
from gateway.ingest.values import LOCAL_ZONE
from gateway.ingest.workers import Workers, default_count, fewer_collections
from gateway.observability import metrics
from gateway.store.index import TableRows

BATCH = 2000
"""Resources per transaction: large enough to amortise a commit, small enough to redo."""
JOB_ROWS = 250
"""Rows per job: enough to amortise a round trip to a worker, few enough to keep workers evenly busy."""
PROVENANCE_TARGETS = 10_000
"""Targets per part of a load's Provenance. One Provenance naming every resource of a 20,000-subject
export (140,000 targets) took 55 MB as Python objects, and more again as index rows; the store
writes a resource whole, so the Provenance is cut into parts of a bounded size (a part costs
less memory than a batch of rows)."""
COHORT_MEMBERS = 10_000
"""Cohort members in the Groups held before they are written (a batch of Groups is written
when it reaches this many, so the Groups of many studies are not all in memory at once)."""


class Store(Protocol):
    async def put_many(self, resources: Iterable[dict[str, Any]],
                       index: Sequence[TableRows | None] | None = None) -> list[Any]: ...
    async def existing_ids(self, type_: str, ids: list[str]) -> set[str]: ...
    async def read_bytes(self, type_: str, id_: str) -> bytes | None: ...
    def transaction(self) -> AbstractAsyncContextManager[Any]: ...


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


@dataclass(frozen=True, slots=True)
class Row:
    """A mapped row back from its job, waiting for its references to resolve."""

    spec: RecordMapping
    file: str
    mapped: Mapped

    @property
    def ref(self) -> str:
        return self.mapped.ref


@dataclass(frozen=True, slots=True)
class Pending:
    """A resource to put, its index rows if extracted, and the record set whose counts its outcome
    goes to (primary only)."""

    resource: dict[str, Any]
    index: TableRows | None = None
    record_set: str | None = None
    only_if_new: bool = False


class Load:
    """One run of `load`: the state of the second pass lives here (what grows with the export, in `scratch`)."""

    def __init__(self, store: Store, mappings: Mappings, report: LoadReport, context: Context, index: Index,
                 scratch: Scratch, since: datetime | None, batch: int) -> None:
        self.store, self.mappings, self.report, self.context = store, mappings, report, context
        self.index, self.scratch, self.since, self.batch = index, scratch, since, batch
        self.loaded = scratch.loaded  # Type/id of every resource this load accepted or derived
        self.rejected = scratch.rejected
        self.in_store = scratch.in_store
        self.inherited = scratch.inherited  # Type/id -> its value of the spec's `inherit` element
        self.waiting: dict[str, list[Row]] = {}
        self.queue: deque[Row] = deque()
        self.out: list[Pending] = []
        self.writing: asyncio.Task[None] | None = None
        self.statistics = Statistics(store)
        self.cohort_spec = next((s for s in mappings.record_sets.values() if s.cohort), None)
        self.cohort_source = next((r.record_set for r in self.cohort_spec.references
                                   if r.column == self.cohort_spec.cohort.study), None) if self.cohort_spec else None

    # -- jobs out, outcomes back ----------------------------------------------------------

    async def jobs(self, tables: dict[str, Table]) -> AsyncIterator[Job]:
        """The rows to map, in load order, as jobs (made only when a worker can take one)."""
        for name in LOAD_ORDER:
            table = tables.get(name)
            if table is None or name in self.index.refused:
                continue
            spec = self.mappings.record_sets[name]
            counts = self.report.counts(name)
            async for chunk in table.chunks(JOB_ROWS):
                rows = []
                for row in chunk:
                    if included(spec, row, self.since):
                        counts.read += 1
                        rows.append((row.line, row.cells, row.error))
                    else:
                        counts.skipped += 1
                if rows:
                    yield self.job(spec, rows)

    def job(self, spec: RecordMapping, rows: list[tuple[int, dict[str, str], str | None]]) -> Job:
        """A job with the first pass's facts about its rows and the values its rows may inherit."""
        repeated = self.scratch.duplicates(spec.name, (cells.get(spec.key, "") for _, cells, _ in rows))
        carried = self.scratch.carried(cells[spec.carry_key] for _, cells, _ in rows
                                       if spec.carry_key and cells.get(spec.carry_key))
        hints: dict[str, Any] = {}
        inherit = spec.inherit
        if inherit is not None:
            parents = {self.mappings.target(spec, inherit.reference, cells[inherit.reference])
                       for _, cells, _ in rows if cells.get(inherit.reference)}
            self.inherited.prefetch(parents)
            hints = {parent: value for parent in parents if (value := self.inherited.get(parent)) is not None}
        self.scratch.settle()
        return Job(spec.name, tuple(rows), carried, repeated, hints)

    async def run(self, tables: dict[str, Table], workers: Workers, progress: Any) -> None:
        async for job, outcomes in workers.map(self.jobs(tables)):
            spec, file = self.mappings.record_sets[job.record_set], tables[job.record_set].location
            mapped = []
            for outcome in outcomes:
                if isinstance(outcome, Rejected):
                    self.reject_row(spec, file, outcome.line, outcome.key, outcome.reason)
                else:
                    mapped.append(Row(spec, file, outcome))
            await self.resolve(mapped)
            if progress is not None:
                progress.advance(progress.task_ids[0], len(job.rows))
            if len(self.out) >= self.batch:
                await self.flush()
            self.scratch.settle()
        for ref, rows in list(self.waiting.items()):  # only when a target never came
            for row in rows:
                self.reject_row(row.spec, row.file, row.mapped.line, row.mapped.key, f"reference {ref} never resolved")
        self.waiting.clear()
        await self.flush()
        self.scratch.settle()

    # -- the rules that depend on order -----------------------------------------------------

    def reject_row(self, spec: RecordMapping, file: str, line: int, key: str, reason: str) -> None:
        self.report.reject(spec.name, file, line, key, reason)
        if key:
            ref = f"{spec.resource_type}/{spec.resource_id(key)}"
            self.rejected.add(ref)
            self.queue.extend(self.waiting.pop(ref, ()))

    async def resolve(self, mapped: list[Row]) -> None:
        targets = {r.target for row in mapped for r in row.mapped.refs}
        self.loaded.prefetch(targets | {d.ref for row in mapped for d in row.mapped.derived})
        elsewhere = [target for target in targets if target not in self.loaded]
        self.in_store.prefetch(elsewhere)
        await self._check_store({target for target in elsewhere if target not in self.in_store})
        await self._inherit_from_store(mapped)
        self.queue.extend(mapped)
        while self.queue:
            row = self.queue.popleft()
            verdict = self._verdict(row)
            if verdict is None:
                self.accept(row)
            elif verdict[0] == "wait":
                self.waiting.setdefault(verdict[1], []).append(row)
            else:
                self.reject_row(row.spec, row.file, row.mapped.line, row.mapped.key, verdict[1])

    def _verdict(self, row: Row) -> tuple[str, str] | None:
        """None when every reference resolves; ("wait", ref) or ("reject", reason) otherwise."""
        for ref in row.mapped.refs:
            if ref.target in self.loaded or self.in_store.get(ref.target):
                continue
            record_set = row.spec.reference_sets[ref.column]
            if ref.target not in self.rejected and self.scratch.has_key(record_set, ref.value):
                return "wait", ref.target
            return "reject", ref.reason + (" (rejected in this load)" if ref.target in self.rejected else "")
        return None

    async def _check_store(self, refs: set[str]) -> None:
        by_type: dict[str, list[str]] = {}
        for ref in refs:
            type_, id_ = ref.split("/", 1)
            by_type.setdefault(type_, []).append(id_)
        for type_, ids in by_type.items():
            found = await self.store.existing_ids(type_, ids)
            for id_ in ids:
                self.in_store.add(f"{type_}/{id_}", id_ in found)

    async def _inherit_from_store(self, mapped: list[Row]) -> None:
        """Fetch inherited values of parents loaded earlier (parents of this load are known)."""
        self.inherited.prefetch(row.mapped.parent for row in mapped if row.mapped.parent and row.spec.inherit)
        for row in mapped:
            parent, inherit = row.mapped.parent, row.spec.inherit
            if inherit and parent and parent not in self.inherited and self.in_store.get(parent):
                raw = await self.store.read_bytes(*parent.split("/", 1))
                self.inherited.add(parent, inherit.get(orjson.loads(raw)) if raw else None)

    def settle(self, row: Row) -> Prepared:
        """The row's resource as accepted now: the worker's, unless the value it guessed for the
        inherited element is not what the parent turned out to give (then it is checked here)."""
        mapped, inherit = row.mapped, row.spec.inherit
        if inherit is None or mapped.parent is None:
            return mapped.primary
        expected = self.inherited.get(mapped.parent)
        if expected == mapped.inherited:
            return mapped.primary
        base = orjson.loads(mapped.primary.json if mapped.base is None else mapped.base)
        return self.context.prepare(base if expected is None else inherit.with_value(base, expected))

    def accept(self, row: Row) -> None:
        """Store the row's resources, unless they fail their profiles (the row is then rejected)."""
        primary = self.settle(row)
        fresh = [(d, d.checked if d.checked is not None else self.context.prepare(orjson.loads(d.json)))
                 for d in row.mapped.derived if d.ref not in self.loaded]
        for candidate in (primary, *(prepared for _, prepared in fresh)):
            if candidate.errors:
                reason = f"{candidate.resource()['resourceType']} fails its profile: {'; '.join(candidate.errors[:3])}"
                self.reject_row(row.spec, row.file, row.mapped.line, row.mapped.key, reason)
                return
        resource = primary.resource()
        if row.spec.inherit:
            self.inherited.add(row.ref, row.spec.inherit.get(resource))
        self.loaded.add(row.ref)
        self.out.append(Pending(resource, primary.index(), row.spec.name))
        for derived, prepared in fresh:
            self.loaded.add(derived.ref)
            self.out.append(Pending(prepared.resource(), prepared.index(), only_if_new=derived.only_if_new))
        self._note_cohort(row)
        self.queue.extend(self.waiting.pop(row.ref, ()))

    def _note_cohort(self, row: Row) -> None:
        if row.spec.name == self.cohort_source:
            self.scratch.add_cohort(row.mapped.key)
        elif row.mapped.cohort is not None:
            change = row.mapped.cohort
            self.scratch.set_member(change.study, change.entity, change.member)

    async def flush(self) -> None:
        """Start writing the batch so far. It is written while the next rows are resolved (on
        PostgreSQL the server works meanwhile), one batch at a time, in the order they were made."""
        if not self.out:
            return
        batch, self.out = self.out, []
        await self.drain()
        conditional = {_ref(p.resource) for p in batch if p.only_if_new}
        if conditional:
            self.in_store.prefetch(conditional)
            await self._check_store({ref for ref in conditional if ref not in self.in_store})
            batch = [p for p in batch if not (p.only_if_new and self.in_store.get(_ref(p.resource)))]
        self.writing = asyncio.create_task(self._write(batch))

    async def drain(self) -> None:
        """Wait until the batch being written is committed (raising what its write raised)."""
        if self.writing is not None:
            writing, self.writing = self.writing, None
            await writing

    async def _write(self, batch: list[Pending]) -> None:
        results = await self.store.put_many([p.resource for p in batch], [p.index for p in batch])
        await self.statistics.wrote(len(batch))
        for pending, result in zip(batch, results, strict=True):
            if pending.record_set:
                counts = self.report.counts(pending.record_set)
                setattr(counts, result.outcome, getattr(counts, result.outcome) + 1)
            self.report.stored(result.type, result.outcome)

    # -- after the rows -----------------------------------------------------------------

    async def finish(self) -> None:
        """Cohort Groups, then the Provenance: both derived from rows and store only."""
        await self.drain()
        if self.cohort_spec is not None:
            await self._cohorts(self.cohort_spec.cohort.template)
        await self._provenance()

    async def _cohorts(self, template: Node) -> None:
        """Each cohort's Group: its stored members, changed by this load's enrolments."""
        held = 0
        for study, changes in self.scratch.cohorts():
            group = template({"study_id": study, "members": [], "quantity": 0})
            merged = await self._stored_members(group)
            for entity, member in changes.items():
                if member is None:
                    merged.pop(entity, None)
                else:
                    merged[entity] = member
            members = [merged[k] for k in sorted(merged)]
            group = template({"study_id": study, "members": members, "quantity": len(members)})
            prepared = self.context.prepare(group)
            if prepared.errors:
                self.report.warn(f"{_ref(group)} not written, fails its profile: {'; '.join(prepared.errors[:3])}")
                continue
            self.loaded.add(_ref(group))
            self.out.append(Pending(group, prepared.index()))
            held += len(members)
            if held >= COHORT_MEMBERS:
                await self.flush()
                held = 0
        await self.flush()
        await self.drain()

    async def _provenance(self) -> None:
        """The load's Provenance, in parts of at most PROVENANCE_TARGETS targets: the targets are
        sorted, so the parts derive from the rows and store alone (a second load of the same export
        writes them unchanged), and each part names the load's source (a hash of its rows, the same
        in every part) and its place among the parts."""
        total = self.loaded.count()
        if not total or self.index.latest is None:
            return
        values = {
            "hash": self.index.digest.hexdigest()[:40],
            "recorded": self.index.latest,
            "rows": self.index.rows,
            "record_sets": ", ".join(n for n in LOAD_ORDER if n in self.report.record_sets),
            "parts": -(-total // PROVENANCE_TARGETS),
        }
        parts = []
        for part, targets in enumerate(self.loaded.sorted_keys(PROVENANCE_TARGETS), start=1):
            provenance = self.mappings.provenance({**values, "part": part,
                                                   "targets": [{"reference": ref} for ref in targets]})
            self.out.append(Pending(provenance))
            await self.flush()
            parts.append(_ref(provenance))
        await self.drain()
        await self._delete_parts_from(len(parts) + 1, values)
        self.report.provenance = parts

    async def _delete_parts_from(self, first: int, values: dict[str, Any]) -> None:
        """Delete parts `first`, `first + 1`, ... that an earlier load of the same rows wrote and this
        one did not (it accepted fewer resources: a mapping or the store changed): left, they would
        name resources this load did not, under this load's identity. Parts are written from the
        first on, so the stale ones follow each other."""
        stale = []
        while True:
            id_ = self.mappings.provenance({**values, "part": first + len(stale), "targets": []})["id"]
            if not await self.store.existing_ids("Provenance", [id_]):
                break
            stale.append(id_)
        if stale:
            async with self.store.transaction() as tx:
                for id_ in stale:
                    await tx.delete("Provenance", id_)
            self.report.warn(f"{len(stale)} Provenance part(s) of an earlier load of these rows deleted "
                             f"(it named more resources): {', '.join(stale)}")

    async def _stored_members(self, group: dict[str, Any]) -> dict[str, dict[str, Any]]:
        raw = await self.store.read_bytes(group["resourceType"], group["id"])
        if raw is None:
            return {}
        return {m["entity"]["reference"]: m for m in orjson.loads(raw).get("member", ())}


async def load(store: Store, source: str, since: datetime | None = None, report_path: Path | None = None,
               validator: Validator | None = None, progress: bool = False, *,
               mappings_dir: Path = MAPPINGS_DIR, batch: int = BATCH, workers: int | None = None) -> LoadReport:
    """Load the export at `source` (folder, file, or SQL URL) into `store`; return the report.

    `since`: only rows whose `updated_at` is later (a naive value is America/New_York).
    `validator`: checks every resource against its profile; None takes the default
    (`gateway.profiles.ProfileValidator` when installed); another one is pickled to the
    workers. `workers`: processes that map and validate (None: one per CPU; 0 or 1: none,
    all in this process). `progress`: a progress bar, shown only when stdout is a terminal.
    The report is also written to `report_path` if given.
    """
    report = LoadReport(source)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=LOCAL_ZONE)
    mappings = load_mappings(mappings_dir)
    context = Context(mappings, validator if validator is not None else default_validator())
    tables = await open_source(source, report.warn)
    pool = Workers(default_count() if workers is None else workers, context, mappings_dir, validator)
    bar = _progress() if progress and sys.stdout.isatty() else None
    try:
        with fewer_collections(), Scratch() as scratch:
            index = await scan(tables, mappings, report, since, scratch)
            if bar is not None:
                bar.update(bar.task_ids[0], total=index.rows)
            run = Load(store, mappings, report, context, index, scratch, since, batch)
            try:
                await run.run(tables, pool, bar)
                await run.finish()
            finally:
                await run.drain()
    finally:
        pool.close()
        if bar is not None:
            bar.stop()
    for record_set, counts in report.record_sets.items():
        for outcome in ("created", "updated", "unchanged", "rejected"):
            metrics.ingest_rows(record_set, outcome, getattr(counts, outcome))
    if report_path is not None:
        report.write(report_path)
    return report


def _progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), transient=True)
    bar.add_task("loading rows", total=None)
    bar.start()
    return bar
