"""The page statement: `count + 1` matches of a search in keyset order, from its position.

One type: `SELECT ... FROM resources r WHERE <criteria, restriction, position> ORDER BY <sort keys>, r.id
LIMIT n`. Several types (system-level search): the page statement of each type, exactly as its type-level
search would run it (so each type uses its own indexes and planner estimates), merged with UNION ALL and
cut to `n` again. Their common order is (sort keys, type, id) — total, since (type, id) is the primary
key — so one opaque page token is a position in one order across all the types, and every match is
returned exactly once however many types it spans.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.access.gate import Restriction
from gateway.search.cursor import Position, after, decode, order_by
from gateway.search.query import Clause, Criterion, Query, Ref, Token
from gateway.search.sql import (
    Compiler,
    Sql,
    all_of,
    columns,
    decision_join,
    live,
    sort_expression,
    sort_type,
    width,
)

_TYPE_KEY = (Sql("r.type"), False)
"""The tie-break between types of a system-level search, before the id."""


def keys(queries: Sequence[Query], query: Query) -> list[tuple[Sql, bool]]:
    """The order of `query`'s rows (the id comes last, see cursor.py); several types add the type."""
    own = [(sort_expression(k, "r"), k.descending) for k in query.sort]
    return [*own, _TYPE_KEY] if len(queries) > 1 else own


def key_types(queries: Sequence[Query]) -> list[type]:
    """What a page token carries for the keys: the sort values' types (the same parameters in every type)."""
    own = [sort_type(k) for k in queries[0].sort]
    return [*own, str] if len(queries) > 1 else own


def position(queries: Sequence[Query]) -> Position | None:
    """Where the requested page starts (None: the first page); 400 for a token of another search."""
    token = queries[0].page
    return decode(token, key_types(queries)) if token else None


def where(query: Query, restriction: Restriction, probed: frozenset[int] = frozenset(), dialect: str = "sqlite",
          decided: bool = False) -> Sql:
    """The matches of one type (alias `r`): criteria (those in `probed` as probes for `dialect`, see
    probe.py) and restriction, no paging; `decided`: the statement joins the decisions (sql.decision_join).

    SQLite checks the conditions of a row in the order they are written, so there the criteria come before
    the restriction: the consent condition of a collaborator (a lookup per row) then runs for the rows the
    criteria let through, not for every row a walk visits. PostgreSQL orders them by cost itself."""
    criteria = Compiler(restriction, dialect).criteria(query.criteria, "r", probed)
    own = live("r", query.type, restriction, decided)
    return all_of([criteria, own] if dialect == "sqlite" else [own, criteria])


def date_range(query: Query) -> int | None:
    """Position of the first of two or more plain date criteria on one parameter (`collected=ge..&collected=lt..`),
    None if there are none.

    On PostgreSQL a page of such a query is walked in id order (see `driver`): the planner estimates each
    half-range alone (`lo < b`: one row in 14, `hi >= a`: all of them) and cannot see that together they
    match one row in 14, so it either walked ~1,400 `resources` rows for a page (2-8 ms) or, for the earliest
    year, collected every match of one half through a parallel scan of `resources` and sorted it (160-210 ms).
    """
    first: dict[str, int] = {}
    for i, c in enumerate(query.criteria):
        if isinstance(c, Clause) and c.param.kind == "date" and c.param.column is None and c.modifier == "":
            if c.param.code in first:
                return first[c.param.code]
            first[c.param.code] = i
    return None


def walkable(c: Criterion) -> bool:
    """Whether the index rows `c` matches come out of their index in id order: one value, equal on every index
    column before the id — a token with its code (`type, param, code, id, system`), a typed reference
    (`ref_id, ref_type, type, param, id`), a uri (`type, param, value, id`). A walk in id order can start
    from such rows and stop when the page is full."""
    if not isinstance(c, Clause) or c.param.column is not None or len(c.values) != 1:
        return False
    value = c.values[0]
    if c.param.kind == "token":
        return c.modifier == "" and isinstance(value, Token) and value.code is not None
    if c.param.kind == "reference":
        typed = c.modifier in c.param.targets or (c.modifier == "" and isinstance(value, Ref) and value.type)
        return bool(typed) and isinstance(value, Ref) and value.id is not None and value.url is None
    return c.param.kind == "uri" and c.modifier == ""


def beside_range(query: Query) -> list[int]:
    """Positions of the criteria of `query` that are not on the parameter of its date range (none: no range)."""
    first = date_range(query)
    if first is None:
        return []
    pivot = query.criteria[first]
    return [i for i, c in enumerate(query.criteria) if not (isinstance(c, Clause) and c.param == pivot.param)]


def alone(query: Query, restriction: Restriction) -> bool:
    """Whether `query` is one walkable criterion, which a page in id order is walked from (`driver`). Not where
    the type is confined to a patient's compartment (`patient/` scopes): there the compartment's index finds the
    patient's few resources, where a walk would pass every resource of the value."""
    return len(query.criteria) == 1 and walkable(query.criteria[0]) and query.type not in restriction.confined


def driver(query: Query, restriction: Restriction, probed: frozenset[int], dialect: str) -> int | None:
    """The criterion a page in id order is walked from (`driven`), None: no walk.

    A query of one walkable criterion (`alone`): that one, on both engines. Its index rows come in id order,
    so the walk stops when the page is full however many resources the value has, and its plan is the same for
    every value (it runs with a generic plan, probe.Counted.generic): measured on PostgreSQL, backend CPU of a
    page of `Specimen?subject=Patient/X` 400 us as an id list planned for its values, 200 us walked; of
    `ResearchSubject?study=ResearchStudy/X` (2,000 enrolments collected and sorted) 8.5 ms, 150 us walked.

    A date range query: a walkable criterion beside the range when there is one — a small one (not probed,
    see probe.py) first — on both engines; else, on PostgreSQL, the range itself (SQLite then probes every
    criterion from a walk of `resources`, or collects the small ones). Walking `genotyped=true` (20,000
    specimens) in id order and probing each row for the range reads a fifth of the rows the walk of the date
    index reads for the same page, from an index alone (measured over 100k specimens, a page of one month of
    one year on PostgreSQL: 0.9 ms against 2.8 ms, and for a collaborator, who has every walked `resources`
    row checked for consent, 1.0 against 7-11 ms; on SQLite 0.35 ms against 2.5 ms walking `resources`).
    """
    if alone(query, restriction):
        return 0
    first = date_range(query)
    if first is None:
        return None
    candidates = [i for i in beside_range(query) if walkable(query.criteria[i])]
    small = [i for i in candidates if i not in probed]
    if candidates:
        return (small or candidates)[0]
    return first if dialect == "postgresql" else None


def driven(query: Query, restriction: Restriction, probed: frozenset[int], pivot: int, start: Position | None,
           limit: int, dialect: str) -> Sql:
    """The page in id order, walked from the index rows of criterion `pivot` in id order (see `driver`; without
    a date range, from the first of several walkable criteria: gated.py).

    The driving rows are read in id order from an index (the range's: the `(type, id)` index of search_date)
    and joined to `resources` only once every criterion holds, so `resources` is touched for the page rows
    (and rows the restriction refuses), not for every row walked. The criteria on the range's parameter are
    checked together on the driving row's id, in one look at its rows of that parameter (the conjunction the
    planner cannot estimate; Compiler.together); those in `probed` are probes on it, and the remaining
    criteria keep their usual form, so the planner still chooses how to apply them. A resource with several
    matching rows of the driving parameter would come once per row: DISTINCT ON keeps
    one on PostgreSQL, GROUP BY on SQLite (whose "bare columns" come from a row of the group: every row of
    it is joined to the same resource).
    """
    compiler = Compiler(restriction, dialect)
    driving = query.criteria[pivot]
    assert isinstance(driving, Clause)
    rows = compiler.rows(driving)
    walked = rows.id.removesuffix(".id")
    beside = [i for i in (beside_range(query) if date_range(query) is not None else range(len(query.criteria)))
              if i != pivot]
    ranged = [c for i, c in enumerate(query.criteria) if i != pivot and i not in beside and isinstance(c, Clause)]
    conditions = [rows.where,
                  compiler.criteria([query.criteria[i] for i in beside], walked,
                                    frozenset(n for n, i in enumerate(beside) if i in probed)),
                  *([compiler.together(ranged, walked)] if ranged else []),
                  live("r", query.type, restriction, decided=True)]
    if start is not None:
        conditions.append(after([], rows.id, start))
    condition = all_of(conditions)
    order = order_by([], rows.id, start.backward if start else False)
    distinct, group = (f"DISTINCT ON ({rows.id}) ", "") if dialect == "postgresql" else ("", f" GROUP BY {rows.id}")
    return Sql(f"SELECT {distinct}{columns('r', restriction)} FROM {rows.source} JOIN resources r "
               f"ON r.type = ? AND r.id = {rows.id}{decision_join('r', restriction)} WHERE {condition.text}{group} "
               f"ORDER BY {order.text} LIMIT ?",
               [query.type, *condition.params, limit])


def _branch(queries: Sequence[Query], query: Query, restriction: Restriction, probed: frozenset[int],
            start: Position | None, limit: int, dialect: str) -> Sql:
    order_keys = keys(queries, query)
    pivot = None if order_keys else driver(query, restriction, probed, dialect)
    if pivot is not None:
        return driven(query, restriction, probed, pivot, start, limit, dialect)
    conditions = [where(query, restriction, probed, dialect, decided=True)]
    if start is not None:
        conditions.append(after(order_keys, "r.id", start))
    condition = all_of(conditions)
    order = order_by(order_keys, "r.id", start.backward if start else False)
    keyed = "".join(f", {expr.text} AS k{i}" for i, (expr, _) in enumerate(order_keys))
    return Sql(f"SELECT {columns('r', restriction)}{keyed} FROM resources r{decision_join('r', restriction)} "
               f"WHERE {condition.text} ORDER BY {order.text} LIMIT ?",
               [*(p for expr, _ in order_keys for p in expr.params), *condition.params, *order.params, limit])


def page_statement(queries: Sequence[Query], restriction: Restriction, probed: Sequence[frozenset[int]],
                   start: Position | None, limit: int, dialect: str = "sqlite") -> Sql:
    """The statement of one page (`limit` rows) of `queries`: one per searched type, `probed` per query."""
    branches = [_branch(queries, q, restriction, p, start, limit, dialect)
                for q, p in zip(queries, probed, strict=True)]
    if len(branches) == 1:
        return branches[0]
    merged = " UNION ALL ".join(f"SELECT * FROM ({b.text}) AS b{i}" for i, b in enumerate(branches))
    columns = [(Sql(f"k{i}"), descending) for i, (_, descending) in enumerate(keys(queries, queries[0]))]
    order = order_by(columns, "id", start.backward if start else False)
    return Sql(f"{merged} ORDER BY {order.text} LIMIT ?", [*(p for b in branches for p in b.params), limit])


def boundary(row: Sequence[Any], restriction: Restriction, n_keys: int, backward: bool = False) -> Position:
    """The position of a row of the page statement (`columns` of the restriction, then the keys)."""
    start = width(restriction)
    return Position(tuple(row[start:start + n_keys]), row[1], backward)

