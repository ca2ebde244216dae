"""Which criteria are checked per resource (EXISTS probes) rather than collected as id lists (IN).

A page is `count + 1` matches in keyset order. There are two ways to find them: collect every id a
criterion matches and sort them (the cost grows with the matches), or walk the resources in page
order and check the criterion on each until the page is full (the cost grows with the resources
walked per match). Which is cheaper depends on how many rows the criterion matches; where the engine
cannot tell, the data is asked first — one small bounded count per candidate criterion, all of a query's
in one statement.

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
  statement, the targets found once; the second count runs only when needed, so a chain through
  10,000 patients costs 0.6 ms to decide, not the 30 ms of counting their references). Few targets
  with that many references become a probe — where the page order can be walked from an index (id,
  `_lastUpdated`): under another sort every resource would be probed.
- A date range (two criteria on one date parameter) in id order is walked from the index rows of a walkable
  criterion beside it (both engines), else on PostgreSQL from the date index (statement.driver). On
  PostgreSQL the plain criteria beside it are counted: with RANGE_PROBE_ABOVE rows or more they are probed
  per walked row (the planner otherwise may collect and sort all 20,000 `genotyped=true` specimens, 70 ms,
  for a page that walks 1,500 date rows); fewer stay id lists, so `subject=X` with a range still starts
  from X's few specimens, and a walkable one below the bound is the one walked. The bound is low
  because the count must be cheap: counting to 2,000 reads every index row of the value through a bitmap
  scan (5 ms for `genotyped=true`), to 200 it is a short index-only scan (0.4 ms). A single walkable
  criterion beside the range is not counted, on either engine: it drives the walk whatever its size; nor is
  a query of one walkable criterion (statement.alone), walked the same way.
- What the counts find also tells whether the page's plan depends on the values at all (Counted.generic):
  where it does not, PostgreSQL plans it once, not at every run.
- On PostgreSQL a page of one chain, or of several plain criteria of which one is walkable, in id order, is
  not counted in a statement of its own: its page statement counts and decides itself (gated.py), and only
  what it leaves undecided is planned for the values.
- `_has` with a plain inner criterion on PostgreSQL: the planner estimates the join of the source's
  references and the inner criterion at a few dozen rows, collects every match and sorts it —
  `Patient?_has:Consent:patient:status=active` (17,000 of 20,000 patients): 140-180 ms for a page.
  Walking the patients in id order and probing each takes 1 ms (`status=inactive`, 1 in 7: 41 -> 2.7
  ms), but 130 ms where the inner criterion matches one source (`_has:Specimen:subject:identifier=X`,
  0.7 ms as an id list). Counting the `_has` itself is planned as badly as the page (76 ms for the
  active consents); its inner criterion's index rows are a cheap bound instead: from HAS_PROBE_ABOVE
  the `_has` is probed. Left over: many sources referencing few targets (`_has:Specimen:subject:type=X`
  when all of X's specimens belong to a handful of patients) walk every patient. On SQLite `_has` is
  left to the planner (probing `status=inactive` took 25 ms there against 10 ms as an id list).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.access.gate import Restriction
from gateway.search.query import Chain, Clause, Criterion, Has, Query
from gateway.search.sql import Compiler, Sql, fetch_generic
from gateway.search.statement import alone, beside_range, walkable
from gateway.store.database import Database

PROBE_ABOVE = 2000
"""Index rows from which a plain criterion is probed on SQLite."""
RANGE_PROBE_ABOVE = 200
"""Index rows from which a plain criterion beside a date range is probed on PostgreSQL."""
CHAIN_TARGETS = 100
"""Targets below which a chain's references are counted on PostgreSQL."""
CHAIN_PROBE_ABOVE = 1000
"""References (of fewer than CHAIN_TARGETS targets) from which a chain is probed on PostgreSQL."""
HAS_PROBE_ABOVE = 200
"""Index rows of a `_has`'s inner criterion from which the `_has` is probed on PostgreSQL."""


def _bounded_count(rows: Sql, bound: int) -> Sql:
    return Sql(f"SELECT COUNT(*) FROM ({rows.text} LIMIT ?) AS x", [*rows.params, bound])


def _walked_alone(query: Query, compiler: Compiler, walks: bool) -> bool:
    """A page in id order walked from one walkable criterion (`walks`: a page of this type alone, not merged
    with other types' in type order), alone (statement.alone) or beside a date range: that criterion drives
    the walk whatever its size and the range is checked per row (statement.driver), so nothing is left to
    decide."""
    if not walks or query.sort:
        return False
    if len(query.criteria) == 1:
        return alone(query, compiler.restriction)
    beside = beside_range(query)
    return len(beside) == 1 and walkable(query.criteria[beside[0]])


def _beside_range(query: Query, i: int) -> bool:
    """Whether criterion `i` of `query` is beside the date range of a walk in id order (PostgreSQL)."""
    return not query.sort and i in beside_range(query)


def _test(query: Query, i: int, compiler: Compiler, walks: bool = True) -> tuple[Sql, int] | None:
    """A statement giving one number and the bound from which criterion `i` is better probed; None: never
    probed (`walks`: see `_walked_alone`)."""
    c = query.criteria[i]
    if _walked_alone(query, compiler, walks):
        return None
    if compiler.dialect == "sqlite" or _beside_range(query, i):
        bound = PROBE_ABOVE if compiler.dialect == "sqlite" else RANGE_PROBE_ABOVE
        return (_bounded_count(compiler.rows(c).select(), bound), bound) if plain(c) else None
    if not all(k.param.column is not None for k in query.sort):
        return None
    if isinstance(c, Chain):
        return chain_test(c, compiler), CHAIN_PROBE_ABOVE
    if isinstance(c, Has) and plain(c.inner):
        return _bounded_count(compiler.rows(c.inner).select(), HAS_PROBE_ABOVE), HAS_PROBE_ABOVE
    return None


def plain(c: Criterion) -> bool:
    """A criterion on index rows of its own parameter (not a `resources` column, `:missing`, `:not`)."""
    return isinstance(c, Clause) and c.param.column is None and c.modifier not in ("missing", "not")


def chain_test(c: Chain, compiler: Compiler) -> Sql:
    """The references of `c`'s targets up to CHAIN_PROBE_ABOVE if it has fewer than CHAIN_TARGETS, else -1
    (not probed, and not known to be few: see Counted.generic).

    The targets (up to CHAIN_TARGETS) are found once, in a CTE both counts read: written out twice, as a
    target count and inside the reference count, they were planned twice (measured: planning 0.36 ms, now
    0.22 ms; execution 0.07-0.28 ms, now 0.06 ms)."""
    targets = chain_targets(c, compiler)
    references = chain_references(c, compiler)
    return Sql(f"WITH targets AS ({targets.text}) SELECT CASE WHEN (SELECT COUNT(*) FROM targets) < ? "
               f"THEN ({references.text}) ELSE -1 END", [*targets.params, CHAIN_TARGETS, *references.params])


def chain_targets(c: Chain, compiler: Compiler) -> Sql:
    """`c`'s targets, up to CHAIN_TARGETS of them, as (type, id) rows: the CTE `targets` of `chain_test`."""
    scans = compiler.chain_targets(c)
    return Sql(" UNION ALL ".join(f"SELECT CAST(? AS TEXT) AS type, s{n}.id FROM ({scan.text}) AS s{n}"
                                  for n, (_, scan) in enumerate(scans)) + " LIMIT ?",
               [*(x for target, scan in scans for x in (target, *scan.params)), CHAIN_TARGETS])


def chain_references(c: Chain, compiler: Compiler) -> Sql:
    """The references of the CTE `targets` (`chain_targets`) by `c`, counted up to CHAIN_PROBE_ABOVE."""
    f = compiler.alias("f")
    return _bounded_count(Sql(f"SELECT 1 FROM search_reference {f} WHERE {f}.type = ? AND {f}.param = ? "
                              f"AND ({f}.ref_type, {f}.ref_id) IN (SELECT type, id FROM targets)",
                              [c.param.type_name, c.param.code]), CHAIN_PROBE_ABOVE)


@dataclass(frozen=True, slots=True)
class Counted:
    """What the counts decided for one query."""

    probes: frozenset[int] = frozenset()
    """Positions of the criteria to write as probes."""
    generic: bool = False
    """The plan of the page (of this query alone: a type-level search) does not depend on the values, so it
    runs with a generic plan (sql.fetch_generic): the page is walked in id order from one walkable criterion
    (statement.driver), alone or beside a date range; or every criterion was counted and either matches fewer
    rows than its bound (a chain: fewer than CHAIN_PROBE_ABOVE references of fewer than CHAIN_TARGETS
    targets), so the page collects those few ids and sorts them, or is a chain through few targets that is
    probed, so the page walks its order and looks each resource's references up (sql.Compiler._chain).
    Measured on PostgreSQL, backend CPU planned for the values and with the generic plan: a page of one
    patient's specimens by a chain 433 and 100 us; of a month of `genotyped=true` specimens 1,000 and 600 us
    (the same walk: one day, 57 and 53 ms; 1990-2030, 400 and 200 us); with `status=available` instead,
    1,000 and 800 us."""


async def counted(db: Database, query: Query, restriction: Restriction, walks: bool = True) -> Counted:
    """The criteria of `query` to write as probes, and whether the page's plan depends on the values (`walks`:
    the page is of this type alone, see `_walked_alone`). Every criterion to decide is counted in one
    statement (one round trip on PostgreSQL, however many criteria). Its counts are bounded
    (LIMIT), so their plan is the same whatever the values: it is planned once (sql.fetch_generic; a chain's
    count cost 267 us of backend CPU planned at each run, 67 us with its generic plan)."""
    compiler = Compiler(restriction, db.dialect)
    tests = [(i, test) for i in range(len(query.criteria))
             if (test := _test(query, i, compiler, walks)) is not None]
    if not tests:
        return Counted(generic=_walked_alone(query, compiler, walks))
    found = await fetch_generic(db, "SELECT " + ", ".join(f"({statement.text})" for _, (statement, _) in tests),
                                [x for _, (statement, _) in tests for x in statement.params])
    counts = [(i, n, bound) for (i, (_, bound)), n in zip(tests, found[0], strict=True)]
    return Counted(frozenset(i for i, n, bound in counts if n >= bound),
                   len(counts) == len(query.criteria)
                   and all(0 <= n < bound or (n >= bound and isinstance(query.criteria[i], Chain))
                           for i, n, bound in counts))
