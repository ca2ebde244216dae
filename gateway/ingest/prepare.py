"""The per-row work of a load: a job of rows -> mapped, profile-checked, index-ready resources.

This is where a load spends its CPU (mapping, the profile validator, FHIRPath extraction of
search index rows), so it is a pure function of a :class:`Job`, with no store and no load
state: the loader runs it on worker processes (workers.py) or inline. What it needs from
the rest of the load travels in the job — the subjects' carried values, the duplicates found
by the first pass and, for inheritance, the values of parents already accepted (`hints`);
rows of one job inherit from each other in any order. Whatever is guessed here is checked
by the loader before anything is stored (`loader.Load.settle`): a wrong guess costs time,
never correctness.

Derived resources (the subject's Patient, a study's Organization) repeat on many rows, and a
load writes only the first one of each id that it accepts. So a process checks one (profile,
index rows) only the first time it meets its id; later ones go back unchecked, and the loader
checks one itself in the rare case it needs it (every earlier row that carried it rejected).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import orjson

from gateway.ingest.mapping import Mappings, RecordMapping
from gateway.ingest.values import Reject
from gateway.store.index import TableRows, extract_ahead

CHECKED_IDS = 200_000
"""Ids of derived resources remembered as checked, per process and load (then forgotten: a bound)."""


class Validator(Protocol):
    def validate(self, resource: dict[str, Any]) -> list[Any]: ...


class Prepared(NamedTuple):
    """A resource checked against its profile, and its search index rows when it passed, both as
    JSON: outcomes cross a process boundary, and JSON bytes are pickled and turned back into
    objects 4x faster than the objects themselves (measured on specimens)."""

    json: bytes
    errors: tuple[str, ...]
    index_json: bytes | None

    def resource(self) -> dict[str, Any]:
        return orjson.loads(self.json)

    def index(self) -> TableRows | None:
        return None if self.index_json is None else orjson.loads(self.index_json)


class Ref(NamedTuple):
    """A reference of a row: the target `Type/id`, the column and cell naming it, the reject reason."""

    target: str
    column: str
    value: str
    reason: str


class Member(NamedTuple):
    """What an enrolment row does to its study's cohort: `member` joins it, None leaves it."""

    study: str
    entity: str
    member: dict[str, Any] | None


class DerivedResource(NamedTuple):
    """A derived resource of a row (`Type/id`, JSON); `checked` is None when this process had
    already checked one with its id."""

    ref: str
    json: bytes
    checked: Prepared | None
    only_if_new: bool  # write it only when the store does not hold it yet


class Mapped(NamedTuple):
    """A row that mapped. `primary` is the resource with `inherited` applied (when not None) to
    `base`, the JSON of the resource before inheritance (None: the same as primary's); `parent`
    is the row's parent when its own value of the inherited element is empty."""

    line: int
    key: str
    ref: str
    primary: Prepared
    base: bytes | None
    parent: str | None
    inherited: Any
    derived: tuple[DerivedResource, ...]
    refs: tuple[Ref, ...]
    cohort: Member | None


class Rejected(NamedTuple):
    line: int
    key: str
    reason: str


Outcome = Mapped | Rejected
"""Named tuples, not dataclasses: frozen dataclasses unpickle at half the speed."""


@dataclass(frozen=True, slots=True)
class Job:
    """Rows of one record set, in file order, and what the load knows that they need."""

    record_set: str
    rows: tuple[tuple[int, dict[str, str], str | None], ...]  # (line, cells, why unreadable)
    carried: Mapping[str, Mapping[str, str]]  # subject -> its carried column values
    duplicates: Mapping[str, tuple[int, ...]]  # duplicated key of this job -> its lines
    hints: Mapping[str, Any]  # Type/id of an accepted parent -> its value of the inherited element


@dataclass(frozen=True, slots=True)
class _Built:
    line: int
    key: str
    values: dict[str, Any]
    base: dict[str, Any]


@dataclass
class Context:
    """What the work needs, built once per process."""

    mappings: Mappings
    validator: Validator | None
    checked: set[str] = field(default_factory=set)  # Type/id of derived resources checked here

    def prepare(self, resource: dict[str, Any]) -> Prepared:
        """Check `resource` against its profile and, when it passes, extract its index rows."""
        errors = tuple(profile_errors(self.validator, resource))
        return Prepared(orjson.dumps(resource), errors, None if errors else orjson.dumps(extract_ahead(resource)))

    def run(self, job: Job) -> list[Outcome]:
        """Every row of the job, mapped and checked or rejected with the reason, in row order."""
        spec = self.mappings.record_sets[job.record_set]
        built: list[_Built | Rejected] = []
        for line, cells, error in job.rows:
            key = cells.get(spec.key, "")
            try:
                values = _values(spec, job, key, cells, error)
                built.append(_Built(line, key, values, spec.build(values)))
            except Reject as exc:
                built.append(Rejected(line, key, str(exc)))
        guesses = _inheritance(spec, self.mappings, job.hints, [b for b in built if isinstance(b, _Built)])
        return [b if isinstance(b, Rejected) else self._mapped(spec, b, *guesses.get(b.line, (None, None)))
                for b in built]

    def _mapped(self, spec: RecordMapping, row: _Built, parent: str | None, inherited: Any) -> Mapped:
        inherit = spec.inherit
        if inherited is None or inherit is None:
            resource, base = row.base, None
        else:
            resource, base = inherit.with_value(row.base, inherited), orjson.dumps(row.base)
        return Mapped(row.line, row.key, _ref(resource), self.prepare(resource), base, parent, inherited,
                      tuple(self._derived(spec, row.values)), tuple(self._refs(spec, row.values)),
                      _member(spec, row.values))

    def _derived(self, spec: RecordMapping, values: dict[str, Any]) -> Iterator[DerivedResource]:
        for derived in spec.derived:
            resource = derived.build(values)
            if resource is None:
                continue
            ref = _ref(resource)
            checked = None
            if ref not in self.checked:
                if len(self.checked) >= CHECKED_IDS:
                    self.checked.clear()
                self.checked.add(ref)
                checked = self.prepare(resource)
            requires = derived.update_requires
            yield DerivedResource(ref, orjson.dumps(resource) if checked is None else checked.json, checked,
                                  bool(requires) and values.get(requires) is None)

    def _refs(self, spec: RecordMapping, values: dict[str, Any]) -> Iterator[Ref]:
        for reference in spec.references:
            value = values.get(reference.column)
            if value:
                yield Ref(self.mappings.target(spec, reference.column, value), reference.column, value,
                          reference.reason.format(**{reference.column: value}))


def _values(spec: RecordMapping, job: Job, key: str, cells: dict[str, str], error: str | None) -> dict[str, Any]:
    """The row's typed values with the subject's carried ones, or Reject (row-level rules first)."""
    if error:
        raise Reject(error)
    if not key:
        raise Reject(f"missing required {spec.key}")
    lines = job.duplicates.get(key)
    if lines:
        raise Reject(f"duplicate {spec.key} {key} on lines {', '.join(map(str, lines))}: all rejected")
    values = spec.parse(cells)
    carried = job.carried.get(values.get(spec.carry_key) or "", {})
    for column in spec.carry_columns:
        if values.get(column) is None and column in carried:
            values[column] = carried[column]
    return values


def _inheritance(spec: RecordMapping, mappings: Mappings, hints: Mapping[str, Any],
                 rows: list[_Built]) -> dict[int, tuple[str, Any]]:
    """line -> (parent Type/id, the value guessed for it) of each row whose own element is empty:
    from a parent in the same job when there is one (following chains), else from the hints."""
    inherit = spec.inherit
    if inherit is None:
        return {}
    known: dict[str, tuple[Any, str | None]] = {}  # Type/id of a row here -> (own value, parent)
    waiting: dict[int, str] = {}
    for row in rows:
        cell = row.values.get(inherit.reference)
        parent = mappings.target(spec, inherit.reference, cell) if cell else None
        own = inherit.get(row.base)
        known[_ref(row.base)] = (own, parent)
        if parent and own is None:
            waiting[row.line] = parent

    def value_of(ref: str, depth: int) -> Any:
        if ref not in known or depth > len(known):  # not in this job (or a cycle)
            return hints.get(ref)
        own, parent = known[ref]
        return own if own is not None or parent is None else value_of(parent, depth + 1)

    return {line: (parent, value_of(parent, 0)) for line, parent in waiting.items()}


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _member(spec: RecordMapping, values: dict[str, Any]) -> Member | None:
    cohort = spec.cohort
    if cohort is None:
        return None
    member = cohort.member(values)
    keep = values.get(cohort.status) in cohort.member_statuses
    return Member(values[cohort.study], member["entity"]["reference"], member if keep else None)


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
