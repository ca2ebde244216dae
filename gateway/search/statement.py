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
from gateway.search.query import Clause, Query
from gateway.search.sql import RESOURCE_COLUMNS, Compiler, Sql, all_of, live, sort_expression, sort_type

_COLS = ", ".join(f"r.{c}" for c in RESOURCE_COLUMNS)
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


def where(query: Query, restriction: Restriction, probed: frozenset[int] = frozenset(), dialect: str = "sqlite"
          ) -> Sql:
    """The matches of one type (alias `r`): criteria (those in `probed` as probes for `dialect`, see
    probe.py) and restriction, no paging."""
    criteria = Compiler(restriction, dialect).criteria(query.criteria, "r", probed)
    return all_of([live("r", query.type, restriction), criteria])


def date_range(query: Query) -> int | None:
    """Position of the first of two or more plain date criteria on one parameter (`collected=ge..&collected=lt..`),
    None if there are none.

    On PostgreSQL such a range is walked from its index table (see `_driven`): the planner estimates each
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


def _driven(query: Query, restriction: Restriction, probed: frozenset[int], driver: int, start: Position | None,
            limit: int) -> Sql:
    """The page in id order, walked from the index rows of criterion `driver` in id order (PostgreSQL).

    The driving rows are read in id order from the `(type, id)` index of their table and joined to `resources`
    only once every criterion holds, so `resources` is touched for the page rows (and rows the restriction
    refuses), not for every row walked. The other criteria on the driver's parameter are probes on the driving
    row's id (the conjunction the planner cannot estimate); the remaining criteria keep their usual form, so
    the planner still chooses how to apply them. A resource with several matching rows of the driving
    parameter would come once per row: DISTINCT ON keeps one.
    """
    compiler = Compiler(restriction, "postgresql")
    pivot = query.criteria[driver]
    assert isinstance(pivot, Clause)
    rows = compiler.rows(pivot)
    others = [(i, c) for i, c in enumerate(query.criteria) if i != driver]
    probes = frozenset(n for n, (i, c) in enumerate(others)
                       if i in probed or (isinstance(c, Clause) and c.param == pivot.param))
    conditions = [rows.where, compiler.criteria([c for _, c in others], rows.id.removesuffix(".id"), probes),
                  live("r", query.type, restriction)]
    if start is not None:
        conditions.append(after([], rows.id, start))
    condition = all_of(conditions)
    order = order_by([], rows.id, start.backward if start else False)
    return Sql(f"SELECT DISTINCT ON ({rows.id}) {_COLS} FROM {rows.source} JOIN resources r ON r.type = ? "
               f"AND r.id = {rows.id} WHERE {condition.text} ORDER BY {order.text} LIMIT ?",
               [query.type, *condition.params, limit])


def _branch(queries: Sequence[Query], query: Query, restriction: Restriction, probed: frozenset[int],
            start: Position | None, limit: int, dialect: str) -> Sql:
    order_keys = keys(queries, query)
    driver = date_range(query) if dialect == "postgresql" and not order_keys else None
    if driver is not None:
        return _driven(query, restriction, probed, driver, start, limit)
    conditions = [where(query, restriction, probed, dialect)]
    if start is not None:
        conditions.append(after(order_keys, "r.id", start))
    condition = all_of(conditions)
    order = order_by(order_keys, "r.id", start.backward if start else False)
    columns = "".join(f", {expr.text} AS k{i}" for i, (expr, _) in enumerate(order_keys))
    return Sql(f"SELECT {_COLS}{columns} FROM resources r WHERE {condition.text} ORDER BY {order.text} LIMIT ?",
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


def boundary(row: Sequence[Any], n_keys: int, backward: bool = False) -> Position:
    """The position of a row of the page statement (resource columns, then the keys)."""
    width = len(RESOURCE_COLUMNS)
    return Position(tuple(row[width:width + n_keys]), row[1], backward)

