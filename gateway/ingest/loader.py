"""A load: source rows -> mapped, validated FHIR -> the store, in atomic batches -> a report.

Two passes over the source, both streaming. The first (`_scan`) keeps only what the rules
need from other records: each record set's keys (duplicates in one load reject *both*
rows; a reference to a key still to come waits for it), values carried per subject (an
MRN given on one row reaches the subject's Patient), unknown columns, and a SHA-256 over
the rows. The second maps every row and writes batches with `Store.put_many`.

Why this converges after a kill -9: every batch is one transaction, ids derive from source
ids, and an unchanged resource gets no new version — so re-running writes the same content
again, finishing what was not committed. The cohort Groups and the Provenance are written
last and derive only from the rows and the store, never from the clock: a re-run, or the
same export loaded twice, produces them identically. A reference resolves when its target
was accepted earlier in this load or exists in the store; when the target row is still to
come the row waits for it (in memory: forward references are few), and is rejected when
that target is rejected or never comes.
"""

from __future__ import annotations

import hashlib
import sys
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from gateway.ingest.mapping import LOAD_ORDER, Mappings, RecordMapping, load_mappings
from gateway.ingest.report import LoadReport
from gateway.ingest.sources import RawRow, Table, open_source
from gateway.ingest.values import LOCAL_ZONE, Reject, as_instant, parse_when
from gateway.observability import metrics

BATCH = 2000
"""Resources per transaction: large enough to amortise a commit, small enough to redo."""


class Validator(Protocol):
    def validate(self, resource: dict[str, Any]) -> list[Any]: ...


class Store(Protocol):
    async def put_many(self, resources: Iterable[dict[str, Any]]) -> list[Any]: ...
    async def existing_ids(self, type_: str, ids: list[str]) -> set[str]: ...
    async def read_bytes(self, type_: str, id_: str) -> bytes | None: ...


def default_validator() -> Validator | None:
    """The profile validator (gateway.profiles) when that package is present."""
    try:
        from gateway.profiles import ProfileValidator
    except ImportError:
        return None
    return ProfileValidator.load()


def profile_errors(validator: Validator | None, resource: dict[str, Any]) -> list[str]:
    """Error diagnostics of `resource` against its profile (the one place validation is called)."""
    if validator is None:
        return []
    out = []
    for issue in validator.validate(resource):
        if getattr(issue, "severity", "error") in ("error", "fatal"):
            where = ", ".join(getattr(issue, "expression", ()) or ())
            out.append(f"{issue.diagnostics} ({where})" if where else str(issue.diagnostics))
    return out


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


@dataclass
class Index:
    """What the first pass learnt: keys per record set, carried values, the rows' digest."""

    keys: dict[str, set[str]] = field(default_factory=dict)
    duplicates: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    carried: dict[str, dict[str, str]] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    rows: int = 0
    latest: datetime | None = None
    digest: Any = field(default_factory=hashlib.sha256)


@dataclass
class Mapped:
    """A row that mapped and validated, waiting for its references to resolve."""

    spec: RecordMapping
    file: str
    line: int
    key: str
    values: dict[str, Any]
    resource: dict[str, Any]
    derived: list[tuple[dict[str, Any], str | None]]
    refs: list[tuple[str, str, str]]  # (Type/id, record set, reason)

    def ref_of(self, column: str) -> str | None:
        """The Type/id the reference in `column` names, if that column is set."""
        return next((ref for ref, c, _ in self.refs if c == column), None)

    @property
    def ref(self) -> str:
        return _ref(self.resource)


@dataclass
class Pending:
    """A resource to put, and the record set whose counts its outcome goes to (primary only)."""

    resource: dict[str, Any]
    record_set: str | None = None
    only_if_new: bool = False


class Load:
    """One run of `load`: the state of the second pass lives here."""

    def __init__(self, store: Store, mappings: Mappings, report: LoadReport, validator: Validator | None,
                 since: datetime | None, batch: int) -> None:
        self.store, self.mappings, self.report, self.validator = store, mappings, report, validator
        self.since, self.batch = since, batch
        self.index = Index()
        self.loaded: set[str] = set()  # Type/id of every resource this load accepted or derived
        self.rejected: set[str] = set()
        self.in_store: dict[str, bool] = {}
        self.inherited: dict[str, Any] = {}  # Type/id -> its value of the spec's `inherit` element
        self.waiting: dict[str, list[Mapped]] = {}
        self.queue: deque[Mapped] = deque()
        self.out: list[Pending] = []
        self.members: dict[str, dict[str, dict[str, Any] | None]] = {}
        self.cohort_spec = next((s for s in mappings.record_sets.values() if s.cohort), None)
        self.cohort_source = next((r.record_set for r in self.cohort_spec.references
                                   if r.column == self.cohort_spec.cohort.study), None) if self.cohort_spec else None

    # -- first pass ---------------------------------------------------------------------

    def included(self, spec: RecordMapping, row: RawRow) -> bool:
        """False for rows `--since` leaves out (an unreadable `updated_at` is kept: it rejects)."""
        if self.since is None:
            return True
        try:
            return as_instant(parse_when(row.cells.get(spec.updated, ""))) > self.since
        except Reject:
            return True

    async def scan(self, tables: dict[str, Table], progress: Any) -> None:
        conflicts: list[str] = []
        for name, table in tables.items():
            spec = self.mappings.record_sets[name]
            keys: dict[str, int] = {}
            duplicates: dict[str, list[int]] = {}
            unknown: set[str] = set()
            self.index.digest.update(name.encode())
            async for chunk in table.chunks():
                if not self._header_ok(spec, table):
                    break
                for row in chunk:
                    if not self.included(spec, row):
                        continue
                    self.index.rows += 1
                    self.index.digest.update(orjson.dumps(row.cells, option=orjson.OPT_SORT_KEYS))
                    unknown.update(row.cells.keys() - spec.columns.keys())
                    self._note_updated(spec, row)
                    key = row.cells.get(spec.key, "")
                    if key in keys:
                        duplicates.setdefault(key, [keys[key]]).append(row.line)
                    elif key:
                        keys[key] = row.line
                    self._carry(spec, row, conflicts)
            self._header_ok(spec, table)
            if unknown:
                self.report.warn(f"{table.location}: unknown columns ignored: {', '.join(sorted(unknown))}")
            self.index.keys[name] = set(keys)
            self.index.duplicates[name] = duplicates
        if conflicts:
            examples = "; ".join(conflicts[:5])
            self.report.warn(f"{len(conflicts)} subjects with conflicting values, first kept: {examples}")
        if progress is not None:
            progress.update(progress.task_ids[0], total=self.index.rows)

    def _header_ok(self, spec: RecordMapping, table: Table) -> bool:
        """A table whose header lacks the key column is refused whole (no header row, most likely)."""
        if spec.name in self.index.refused:
            return False
        if table.columns is not None and spec.key not in table.columns:
            self.index.refused.add(spec.name)
            self.report.reject(spec.name, table.location, 1, None,
                               f"header row missing or without {spec.key}: file not loaded", counted=False)
            return False
        return True

    def _note_updated(self, spec: RecordMapping, row: RawRow) -> None:
        try:
            moment = as_instant(parse_when(row.cells.get(spec.updated, "")))
        except Reject:
            return
        if self.index.latest is None or moment > self.index.latest:
            self.index.latest = moment

    def _carry(self, spec: RecordMapping, row: RawRow, conflicts: list[str]) -> None:
        subject = row.cells.get(spec.carry_key or "", "")
        if not subject:
            return
        carried = self.index.carried.setdefault(subject, {})
        for column in spec.carry_columns:
            value = row.cells.get(column, "")
            if not value:
                continue
            if column not in carried:
                carried[column] = value
            elif carried[column] != value:
                conflicts.append(f"{subject} {column} {carried[column]!r} vs {value!r} ({spec.name} line {row.line})")

    # -- second pass --------------------------------------------------------------------

    async def run(self, tables: dict[str, Table], progress: Any) -> None:
        for name in LOAD_ORDER:
            table = tables.get(name)
            if table is None or name in self.index.refused:
                continue
            spec = self.mappings.record_sets[name]
            counts = self.report.counts(name)
            async for chunk in table.chunks():
                mapped = []
                for row in chunk:
                    if not self.included(spec, row):
                        counts.skipped += 1
                        continue
                    counts.read += 1
                    try:
                        mapped.append(self.map_row(spec, table, row))
                    except Reject as exc:
                        self.reject_row(spec, table.location, row.line, row.cells.get(spec.key, ""), str(exc))
                await self.resolve(mapped)
                if progress is not None:
                    progress.advance(progress.task_ids[0], len(chunk))
                if len(self.out) >= self.batch:
                    await self.flush()
        for ref, rows in list(self.waiting.items()):  # only when a target never came
            for row in rows:
                self.reject_row(row.spec, row.file, row.line, row.key, f"reference {ref} never resolved")
        self.waiting.clear()
        await self.flush()

    def map_row(self, spec: RecordMapping, table: Table, row: RawRow) -> Mapped:
        if row.error:
            raise Reject(row.error)
        key = row.cells.get(spec.key, "")
        if not key:
            raise Reject(f"missing required {spec.key}")
        lines = self.index.duplicates[spec.name].get(key)
        if lines:
            raise Reject(f"duplicate {spec.key} {key} on lines {', '.join(map(str, lines))}: all rejected")
        values = spec.parse(row.cells)
        carried = self.index.carried.get(values.get(spec.carry_key) or "", {})
        for column in spec.carry_columns:
            if values.get(column) is None and column in carried:
                values[column] = carried[column]
        resource, derived = spec.build(values)
        refs = []
        for reference in spec.references:
            value = values.get(reference.column)
            if value:
                target = self.mappings.record_sets[reference.record_set]
                target_type = target.resource_type
                refs.append((f"{target_type}/{target.resource_id(value)}", reference.column,
                             reference.reason.format(**{reference.column: value})))
        return Mapped(spec, table.location, row.line, key, values, resource, derived, refs)

    def reject_row(self, spec: RecordMapping, file: str, line: int, key: str, reason: str) -> None:
        self.report.reject(spec.name, file, line, key, reason)
        if key:
            ref = f"{spec.resource_type}/{spec.resource_id(key)}"
            self.rejected.add(ref)
            self.queue.extend(self.waiting.pop(ref, ()))

    async def resolve(self, mapped: list[Mapped]) -> None:
        unknown = {ref for m in mapped for ref, _, _ in m.refs if ref not in self.loaded and ref not in self.in_store}
        await self._check_store(unknown)
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
                self.reject_row(row.spec, row.file, row.line, row.key, verdict[1])

    def _verdict(self, row: Mapped) -> tuple[str, str] | None:
        """None when every reference resolves; ("wait", ref) or ("reject", reason) otherwise."""
        for ref, column, reason in row.refs:
            if ref in self.loaded or self.in_store.get(ref):
                continue
            record_set = row.spec.reference_sets[column]
            if ref not in self.rejected and row.values[column] in self.index.keys.get(record_set, ()):
                return "wait", ref
            return "reject", reason + (" (rejected in this load)" if ref in self.rejected else "")
        return None

    async def _check_store(self, refs: set[str]) -> None:
        by_type: dict[str, list[str]] = {}
        for ref in refs:
            type_, id_ = ref.split("/", 1)
            by_type.setdefault(type_, []).append(id_)
        for type_, ids in by_type.items():
            found = await self.store.existing_ids(type_, ids)
            self.in_store.update({f"{type_}/{i}": i in found for i in ids})

    async def _inherit_from_store(self, mapped: list[Mapped]) -> None:
        """Fetch inherited values of parents loaded earlier (parents of this load are known)."""
        for row in mapped:
            inherit = row.spec.inherit
            parent = row.ref_of(inherit.reference) if inherit else None
            if parent and parent not in self.inherited and self.in_store.get(parent):
                raw = await self.store.read_bytes(*parent.split("/", 1))
                self.inherited[parent] = inherit.get(orjson.loads(raw)) if raw else None

    def accept(self, row: Mapped) -> None:
        """Store the row's resources, unless they fail their profiles (the row is then rejected)."""
        inherit = row.spec.inherit
        if inherit:
            parent = row.ref_of(inherit.reference)
            if parent and inherit.get(row.resource) is None and self.inherited.get(parent) is not None:
                inherit.set(row.resource, self.inherited[parent])
        fresh = [(d, requires) for d, requires in row.derived if _ref(d) not in self.loaded]
        for candidate in (row.resource, *(d for d, _ in fresh)):
            errors = profile_errors(self.validator, candidate)
            if errors:
                reason = f"{candidate['resourceType']} fails its profile: {'; '.join(errors[:3])}"
                self.reject_row(row.spec, row.file, row.line, row.key, reason)
                return
        if inherit:
            self.inherited[row.ref] = inherit.get(row.resource)
        self.loaded.add(row.ref)
        self.out.append(Pending(row.resource, row.spec.name))
        for resource, requires in fresh:
            self.loaded.add(_ref(resource))
            self.out.append(Pending(resource, only_if_new=bool(requires) and row.values.get(requires) is None))
        self._note_cohort(row)
        self.queue.extend(self.waiting.pop(row.ref, ()))

    def _note_cohort(self, row: Mapped) -> None:
        if self.cohort_spec is None:
            return
        cohort = self.cohort_spec.cohort
        if row.spec.name == self.cohort_source:
            self.members.setdefault(row.key, {})
        elif row.spec is self.cohort_spec:
            member = cohort.member(row.values)
            study = row.values[cohort.study]
            keep = row.values.get(cohort.status) in cohort.member_statuses
            self.members.setdefault(study, {})[member["entity"]["reference"]] = member if keep else None

    async def flush(self) -> None:
        if not self.out:
            return
        batch, self.out = self.out, []
        conditional = [p for p in batch if p.only_if_new]
        if conditional:
            refs = {_ref(p.resource) for p in conditional}
            await self._check_store(refs - self.in_store.keys())
            batch = [p for p in batch if not (p.only_if_new and self.in_store.get(_ref(p.resource)))]
        results = await self.store.put_many([p.resource for p in batch])
        for pending, result in zip(batch, results, strict=True):
            if pending.record_set:
                counts = self.report.counts(pending.record_set)
                setattr(counts, result.outcome, getattr(counts, result.outcome) + 1)
            self.report.stored(result.type, result.outcome)

    # -- after the rows -----------------------------------------------------------------

    async def finish(self) -> None:
        """Cohort Groups, then the Provenance: both derived from rows and store only."""
        if self.cohort_spec is not None:
            template = self.cohort_spec.cohort.template
            for study in sorted(self.members):
                group = template({"study_id": study, "members": [], "quantity": 0})
                merged = await self._stored_members(group)
                for entity, member in self.members[study].items():
                    if member is None:
                        merged.pop(entity, None)
                    else:
                        merged[entity] = member
                members = [merged[k] for k in sorted(merged)]
                group = template({"study_id": study, "members": members, "quantity": len(members)})
                errors = profile_errors(self.validator, group)
                if errors:
                    self.report.warn(f"{_ref(group)} not written, fails its profile: {'; '.join(errors[:3])}")
                    continue
                self.loaded.add(_ref(group))
                self.out.append(Pending(group))
            await self.flush()
        if self.loaded and self.index.latest is not None:
            provenance = self.mappings.provenance({
                "hash": self.index.digest.hexdigest()[:40],
                "recorded": self.index.latest,
                "rows": self.index.rows,
                "record_sets": ", ".join(n for n in LOAD_ORDER if n in self.report.record_sets),
                "targets": [{"reference": ref} for ref in sorted(self.loaded)],
            })
            self.out.append(Pending(provenance))
            await self.flush()
            self.report.provenance = _ref(provenance)

    async def _stored_members(self, group: dict[str, Any]) -> dict[str, dict[str, Any]]:
        raw = await self.store.read_bytes(group["resourceType"], group["id"])
        if raw is None:
            return {}
        return {m["entity"]["reference"]: m for m in orjson.loads(raw).get("member", ())}


async def load(store: Store, source: str, since: datetime | None = None, report_path: Path | None = None,
               validator: Validator | None = None, progress: bool = False, *,
               mappings: Mappings | None = None, batch: int = BATCH) -> LoadReport:
    """Load the export at `source` (folder, file, or SQL URL) into `store`; return the report.

    `since`: only rows whose `updated_at` is later (a naive value is America/New_York).
    `validator`: checks every resource against its profile; None takes the default
    (`gateway.profiles.ProfileValidator` when installed). `progress`: a progress bar, shown
    only when stdout is a terminal. The report is also written to `report_path` if given.
    """
    report = LoadReport(source)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=LOCAL_ZONE)
    run = Load(store, mappings or load_mappings(), report, validator or default_validator(), since, batch)
    tables = await open_source(source, report.warn)
    bar = _progress() if progress and sys.stdout.isatty() else None
    try:
        await run.scan(tables, bar)
        await run.run(tables, bar)
        await run.finish()
    finally:
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
