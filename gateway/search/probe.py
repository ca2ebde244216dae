"""Which criteria are checked per resource (EXISTS probes) rather than collected as id lists (IN).

A page is `count + 1` matches in keyset order. There are two ways to find them: collect every id a
criterion matches and sort them (the cost grows with the matches), or walk the resources in page
order and check the criterion on each until the page is full (the cost grows with the resources
walked per match). Which is cheaper depends on how many rows the criterion matches; where the engine
cannot tell, the data is asked first — one small bounded count per candidate criterion.

- SQLite materialises every `IN (SELECT ...)` list: 25 ms for a page of `status=unavailable` over
  100k specimens, 0.3 ms as EXISTS probes, while EXISTS costs 230 ms for `identifier=X` that IN
  answers in 0.02 ms. Plain criteria with PROBE_ABOVE rows or more become probes; if none is below
  it, the walk in id order drives the query.
- PostgreSQL's planner makes that choice itself, and makes it well for plain criteria (extended
  statistics, gateway/store/index.py) and for chains through many targets (`subject:Patient.gender=
  female`: targets x average references is a good estimate; it walks, 1.3 ms). What it cannot see is
  a few targets referenced very often: the 2,000 enrolments of one study in `ResearchSubject?study.
  identifier=X` are estimated at a handful, so it collects and sorts them all — 10 ms for a page of 10,
  against 0.7 ms walking the enrolments in id order. So a chain's targets are counted up to
  CHAIN_TARGETS and, only when there are fewer, their references up to CHAIN_PROBE_ABOVE (one
  statement; the second count runs only when needed, so a chain through 10,000 patients costs
  0.6 ms to decide, not the 30 ms of counting their references). Few targets with that many
  references become a probe — where the page order can be walked from an index (id, `_lastUpdated`):
  under another sort every resource would be probed.
- A date range (two criteria on one date parameter) in id order is walked from the date index on PostgreSQL
  (statement.date_range). The plain criteria beside it are counted: with RANGE_PROBE_ABOVE rows or more they
  are probed per walked row (the planner otherwise may collect and sort all 20,000 `genotyped=true`
  specimens, 70 ms, for a page that walks 1,500 date rows); fewer stay id lists, so `subject=X` with a range
  still starts from X's few specimens. The bound is low because the count must be cheap: counting to 2,000
  reads every index row of the value through a bitmap scan (5 ms for `genotyped=true`), to 200 it is a
  short index-only scan (0.4 ms).
- `_has` is left to the planner on both engines: its bounded count is itself planned badly (76 ms for
  the active consents of 20k patients), so deciding would cost what it saves.
"""

from __future__ import annotations

from gateway.access.gate import Restriction
from gateway.search.query import Chain, Clause, Criterion, Query
from gateway.search.sql import Compiler, Sql
from gateway.search.statement import date_range
from gateway.store.database import Database

PROBE_ABOVE = 2000
"""Index rows from which a plain criterion is probed on SQLite."""
RANGE_PROBE_ABOVE = 200
"""Index rows from which a plain criterion beside a date range is probed on PostgreSQL."""
CHAIN_TARGETS = 100
"""Targets below which a chain's references are counted on PostgreSQL."""
CHAIN_PROBE_ABOVE = 1000
"""References (of fewer than CHAIN_TARGETS targets) from which a chain is probed on PostgreSQL."""


def _bounded_count(rows: Sql, bound: int) -> Sql:
    return Sql(f"SELECT COUNT(*) FROM ({rows.text} LIMIT ?) AS x", [*rows.params, bound])


def _beside_range(query: Query, c: Criterion) -> bool:
    """Whether `c` is a criterion beside the date range that drives the walk of `query` (PostgreSQL)."""
    driver = None if query.sort else date_range(query)
    if driver is None:
        return False
    pivot = query.criteria[driver]
    return not (isinstance(c, Clause) and isinstance(pivot, Clause) and c.param == pivot.param)


def _test(query: Query, c: Criterion, compiler: Compiler) -> tuple[Sql, int] | None:
    """A statement giving one number and the bound from which `c` is better probed; None: never probed."""
    if compiler.dialect == "sqlite" or _beside_range(query, c):
        plain = isinstance(c, Clause) and c.param.column is None and c.modifier not in ("missing", "not")
        bound = PROBE_ABOVE if compiler.dialect == "sqlite" else RANGE_PROBE_ABOVE
        return (_bounded_count(compiler.rows(c).select(), bound), bound) if plain else None
    if not isinstance(c, Chain) or not all(k.param.column is not None for k in query.sort):
        return None
    scans = [scan for _, scan in compiler.chain_targets(c)]
    targets = _bounded_count(Sql(" UNION ALL ".join(s.text for s in scans), [x for s in scans for x in s.params]),
                             CHAIN_TARGETS)
    references = _bounded_count(compiler.rows(c).select(), CHAIN_PROBE_ABOVE)
    return Sql(f"SELECT CASE WHEN ({targets.text}) < ? THEN ({references.text}) ELSE 0 END",
               [*targets.params, CHAIN_TARGETS, *references.params]), CHAIN_PROBE_ABOVE


async def probed(db: Database, query: Query, restriction: Restriction) -> frozenset[int]:
    """Positions of the criteria of `query` to write as probes."""
    compiler = Compiler(restriction, db.dialect)
    large = set()
    for i, c in enumerate(query.criteria):
        test = _test(query, c, compiler)
        if test is not None:
            statement, bound = test
            found = await db.fetchall(statement.text, statement.params)
            if found[0][0] >= bound:
                large.add(i)
    return frozenset(large)
