"""Which stored rows one type of an export reads, as keyset pages over `(type, id)` — never OFFSET.

Pages are ordered by id, so the same data always gives the same lines in the same order,
and a job resumes after the last id of its last finished file. Everything that can be said
in SQL is: `_since`, the Group's or the `patient` parameter's members (a join on
`bulk_members`, fixed at kick-off), `_typeFilter` and the scopes' granular constraints
(compiled by the search engine, so they mean exactly what the same search would), and the
principal's Restriction with its consent predicate — so rows that may not leave are not even
read. The egress gate still judges every row that is (see runner.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.access.gate import Restriction
from gateway.access.principal import Principal
from gateway.access.scopes import READ
from gateway.bulk.request import ExportRequest
from gateway.search.engine import SearchEngine
from gateway.search.sql import Sql, all_of, any_of

COLUMNS = "r.type, r.id, r.version, r.ts, r.deleted, r.compartment, r.content"


def _matching(engine: SearchEngine, type_: str, queries: list[list[tuple[str, str]]],
              restriction: Restriction) -> Sql:
    """Rows of `type_` the principal may see that match any of `queries` (all rows when there are none)."""
    parsed = [engine.parse(type_, params, strict=True) for params in queries or [[]]]
    return any_of([engine.where(query, restriction) for query in parsed])


def _consent(restriction: Restriction) -> Sql:
    """The consent predicate of external principals — an adapter until the search engine's
    `where` carries it itself (then this condition is merely repeated)."""
    clause = restriction.consent_sql("r.compartment")
    return Sql(*clause) if clause is not None else Sql("1 = 1")


@dataclass(frozen=True, slots=True)
class Selection:
    """The fixed conditions of one type's scan; `page` adds the keyset position."""

    type: str
    where: Sql

    def page(self, after_id: str, limit: int) -> tuple[str, list[object]]:
        sql = f"SELECT {COLUMNS} FROM resources r WHERE {self.where.text} AND r.id > ? ORDER BY r.id LIMIT ?"
        return sql, [*self.where.params, after_id, limit]


def select(engine: SearchEngine, job_id: str, request: ExportRequest, type_: str, principal: Principal,
           restriction: Restriction) -> Selection:
    """The scan of `type_` for this job. Raises FhirError (400) for a `_typeFilter` the search
    engine refuses, which is why kick-off builds every selection once before accepting a job."""
    parts = [_matching(engine, type_, request.type_filters.get(type_, []), restriction), _consent(restriction)]
    constraints = principal.scopes.constraints(type_, READ)
    if constraints is not None:  # SMART v2 granular scopes (`Specimen.rs?status=available`) filter like _typeFilter
        parts.append(_matching(engine, type_, [list(c) for c in constraints], restriction))
    if request.since_us is not None:
        parts.append(Sql("r.ts > ?", [request.since_us]))
    if request.kind == "group" or request.patients is not None:
        parts.append(Sql("r.compartment IN (SELECT m.patient FROM bulk_members m WHERE m.job_id = ?)", [job_id]))
    elif request.kind == "patient":
        parts.append(Sql("r.compartment IS NOT NULL"))
    return Selection(type_, all_of(parts))
