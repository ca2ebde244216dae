"""`_total` (search.html#total): whether, and how, a page's Bundle.total is found.

- `none`: no total, and no count runs.
- A page that holds every match (the first page, nothing after it) knows its total: no query.
- `accurate` (and `_summary=count`, `_count=0`): COUNT(*) of the matches, restriction included.
- `estimate` on PostgreSQL: the planner's row estimate of the same matches (EXPLAIN: planned, not run —
  about a millisecond, whatever the number of matches), never below the matches this page has seen.
  Only when the principal may see every row of the searched types: the planner estimates from
  statistics of the whole table, so under a `patient/` compartment or a consent condition its number
  would be derived from rows the principal may not see, and the count is exact instead.
  On SQLite there is no row estimate to ask for (EXPLAIN QUERY PLAN gives no row counts, sqlite_stat1
  only average rows per index key), and a count runs in-process on the covering indexes: the estimate
  is the exact count.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from gateway.access.gate import Restriction
from gateway.search.query import Query
from gateway.search.sql import Sql, fetch
from gateway.search.statement import where
from gateway.store.database import Database


def _union(queries: Sequence[Query], restriction: Restriction, select: str) -> Sql:
    parts = [where(q, restriction) for q in queries]
    return Sql(" UNION ALL ".join(f"SELECT {select} FROM resources r WHERE {p.text}" for p in parts),
               [x for p in parts for x in p.params])


async def count(db: Database, queries: Sequence[Query], restriction: Restriction) -> int:
    statement = _union(queries, restriction, "COUNT(*)")
    return sum(int(row[0]) for row in await fetch(db, statement.text, statement.params))


async def estimate(db: Database, queries: Sequence[Query], restriction: Restriction) -> int:
    """The planner's estimate of the matches (PostgreSQL)."""
    statement = _union(queries, restriction, "1")
    rows = await fetch(db, f"EXPLAIN (FORMAT JSON) {statement.text}", statement.params)
    return int(orjson.loads(rows[0][0])[0]["Plan"]["Plan Rows"])


def _sees_every_row(queries: Sequence[Query], restriction: Restriction) -> bool:
    return not restriction.consent and not any(q.type in restriction.confined for q in queries)


async def total(db: Database, queries: Sequence[Query], restriction: Restriction, *, seen: int,
                complete: bool) -> int | None:
    """Bundle.total for a page that fetched `seen` rows (`complete`: they are all the matches)."""
    query = queries[0]
    wanted = query.total or ("accurate" if query.summary == "count" or query.count == 0 else None)
    if wanted == "none":
        return None
    if complete:
        return seen
    if wanted is None:
        return None
    if wanted == "estimate" and db.dialect == "postgresql" and _sees_every_row(queries, restriction):
        return max(await estimate(db, queries, restriction), seen)
    return await count(db, queries, restriction)
