"""Pages that decide their own plan in the statement that fetches them (PostgreSQL): one round trip, one plan.

Some pages have two or more good plans and only the data tells which: `Specimen?identifier=X&status=..` is
best collected from X's one specimen, `Specimen?status=unavailable&type=..` best walked in id order through
both criteria's index rows; a chain through a few targets is best collected if they have few references, else
walked with the targets as one array (probe.py). Planned by PostgreSQL for the values of each run, such a page
cost more to plan than to run (token+token: planning 0.25-0.3 ms, 0.2 ms for an external principal's consent
join on top, for 0.05-0.4 ms of execution); counted first and then run with a generic plan, it costs a round
trip more (a count statement: ~30 us of backend CPU and 40-60 us of the gateway's besides its execution).

So the decision is written into the page statement: a one-row CTE `d` holds which branch answers, found by
bounded counts that PostgreSQL evaluates only as far as the CASE needs them, and the branches — each one page,
written as the engine would write it for that decision — are joined by UNION ALL, each behind a filter on `d`
that PostgreSQL checks once, before running its branch ("One-Time Filter": the others are never executed).
The plan of the whole does not depend on the values, so it runs with a generic plan (sql.fetch_generic),
planned once per connection. A decision this statement cannot make answers with one row whose id is NULL
(`undecided`): the engine then runs the page the planner plans for its values, as it did before.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.access.gate import Restriction
from gateway.search import probe
from gateway.search.cursor import Position, after, order_by
from gateway.search.query import Chain, Query
from gateway.search.sql import Compiler, Rows, Sql, all_of, columns, decision_join, live, width
from gateway.search.statement import date_range, driven, page_statement, walkable
from gateway.store.database import Row

COLLECT_BELOW = 200
"""Index rows below which a walkable criterion's matches are collected rather than walked in id order. Both
engines' other bounds of the kind are 200 too (probe.py); 100 saved ~40 us of backend CPU on a page of
`status=unavailable&type=..` (two counts to the bound), but sends criteria of 100-200 rows to a walk or to
the planner."""
WALK_RATIO = 16
"""How much denser than another a criterion may be for a page to be walked through both (`_comparable`): a
merge reads an index row in ~0.1-0.2 us, where a probe per row (what the planner may pick instead) costs 2-4 us
(EXPLAIN ANALYZE over 100k specimens)."""


def undecided(rows: Sequence[Row]) -> bool:
    """Whether a gated statement's answer is its undecided row (no resource has a NULL id)."""
    return len(rows) == 1 and rows[0][1] is None


def statement(queries: Sequence[Query], restriction: Restriction, start: Position | None, limit: int,
              dialect: str) -> Sql | None:
    """The gated page statement of `queries` (`limit` rows from `start`), None where the page is written as
    before: on SQLite (it has no plan cache: its pages are counted, probe.py), for several types, or for
    criteria this module does not decide (`_plain_walk`, `_one_chain`)."""
    if dialect != "postgresql" or len(queries) != 1:
        return None
    query = queries[0]
    if _plain_walk(query, restriction):
        return _plain(query, restriction, start, limit)
    if _one_chain(query):
        return _chained(query, restriction, start, limit)
    return None


def _plain_walk(query: Query, restriction: Restriction) -> bool:
    """Two or more criteria on index rows, in id order, at least one walkable (statement.walkable), no date
    range (statement.driver walks those), on a type not confined to a patient's compartment (whose index finds
    the patient's few resources)."""
    return (not query.sort and len(query.criteria) > 1 and query.type not in restriction.confined
            and date_range(query) is None and all(probe.plain(c) for c in query.criteria)
            and any(walkable(c) for c in query.criteria))


def _plain(query: Query, restriction: Restriction, start: Position | None, limit: int) -> Sql:
    """Collected from the first walkable criterion with fewer than COLLECT_BELOW index rows (`_collected`); if
    there is none, walked in id order from the index rows of the first, the others joined as id lists
    (statement.driven: PostgreSQL merges their index-only scans in id order) — when every criterion is walkable
    and none is much sparser than another (`_comparable`); else undecided.

    Measured on PostgreSQL over 100k specimens, backend CPU per page statement planned for its values and gated:
    `identifier=X&status=a,b` 300 and 80 us (an external principal's: 420 and 80 us), `status=unavailable&
    type=..` 400-425 and 290-330 us (840 and 400 us), of which ~80 us are the two counts to the bound and the
    comparison; in-process, a token+token search 1.0-1.15 ms -> 0.8-0.85 ms.
    """
    counted = [i for i, c in enumerate(query.criteria) if walkable(c)]
    collected = [_collected(query, restriction, i, start, limit) for i in counted]
    compiler = Compiler(restriction, "postgresql")
    tests = [compiler.rows(query.criteria[i]) for i in counted]
    if len(counted) < len(query.criteria):
        return gated(_decision(tests, Sql(str(len(tests)))), collected, undecided=width(restriction))
    comparable = _comparable(tests)
    walked = Sql(f"CASE WHEN {comparable.text} THEN {len(tests)} ELSE {len(tests) + 1} END", comparable.params)
    walk = driven(query, restriction, frozenset(), counted[0], start, limit, "postgresql")
    return gated(_decision(tests, walked), [*collected, walk], undecided=width(restriction))


def _decision(tests: Sequence[Rows], otherwise: Sql) -> Sql:
    """The position of the first of `tests` (index rows of walkable criteria) with fewer than COLLECT_BELOW
    rows, else `otherwise`, which may read `m0`, `m1`...: the id of each one's COLLECT_BELOW-th row. Each test
    reads its criterion's rows only when those before it have that many (nested subqueries: PostgreSQL runs a
    subquery when its value is first needed), from one index range in id order: a short index-only scan
    (~40 us of execution to the bound)."""
    decision = otherwise
    for n in reversed(range(len(tests))):
        rows = tests[n]
        decision = Sql(f"SELECT CASE WHEN m{n} IS NULL THEN {n} ELSE ({decision.text}) END FROM (SELECT (SELECT "
                       f"{rows.id} FROM {rows.source} WHERE {rows.where.text} ORDER BY {rows.id} OFFSET ? LIMIT 1) "
                       f"OFFSET 0) AS l{n} (m{n})", [*decision.params, *rows.where.params, COLLECT_BELOW - 1])
    return decision


def _comparable(tests: Sequence[Rows]) -> Sql:
    """Whether every criterion of `tests` has COLLECT_BELOW / WALK_RATIO rows or more up to the densest one's
    COLLECT_BELOW-th (`_decision`'s `m0`, `m1`...): a merge in id order reads, for each row of the sparsest
    criterion, the rows of the others up to it, and beyond that ratio a plan planned for the values (which
    can collect the sparse one and sort it) costs less."""
    least = f"LEAST({', '.join(f'm{n}' for n in range(len(tests)))})"
    checks = [Sql(f"EXISTS (SELECT 1 FROM {rows.source} WHERE {rows.where.text} AND {rows.id} <= {least} OFFSET ?)",
                  [*rows.where.params, COLLECT_BELOW // WALK_RATIO - 1]) for rows in tests]
    return all_of(checks)


def _collected(query: Query, restriction: Restriction, pivot: int, start: Position | None, limit: int) -> Sql:
    """The page collected from criterion `pivot`, known to match fewer than COLLECT_BELOW index rows: its ids
    (bounded by a LIMIT written out, so that the plan, made for every value, expects that few at most: each
    looked up by id, not merged with a walk of `resources`), each resource then checked for the other criteria
    as probes (EXISTS): planned for no particular value, an id list could be merged or hashed whole."""
    compiler = Compiler(restriction, "postgresql")
    ids = compiler.rows(query.criteria[pivot]).select()
    others = [c for i, c in enumerate(query.criteria) if i != pivot]
    conditions = [live("r", query.type, restriction, decided=True),
                  Sql(f"r.id IN ({ids.text} LIMIT {COLLECT_BELOW})", ids.params),
                  compiler.criteria(others, "r", frozenset(range(len(others))))]
    if start is not None:
        conditions.append(after([], "r.id", start))
    condition = all_of(conditions)
    order = order_by([], "r.id", start.backward if start else False)
    return Sql(f"SELECT {columns('r', restriction)} FROM resources r{decision_join('r', restriction)} "
               f"WHERE {condition.text} ORDER BY {order.text} LIMIT ?", [*condition.params, limit])


def _one_chain(query: Query) -> bool:
    """One chain, in an order the page can walk (probe.py: `_test`)."""
    return (len(query.criteria) == 1 and isinstance(query.criteria[0], Chain)
            and all(k.param.column is not None for k in query.sort))


def _chained(query: Query, restriction: Restriction, start: Position | None, limit: int) -> Sql:
    """The page of one chain, decided in the same statement by its targets (up to CHAIN_TARGETS, found once in
    the CTE `targets`) and, for few, their references (probe.chain_references): one target's references are
    walked in id order (`_one_target`: the index of references by target holds them in that order), few
    targets' collected if fewer than CHAIN_PROBE_ABOVE, else walked with the targets probed; many targets are
    undecided (the planner weighs those, probe.py). The collected and probed branches are the page statements
    the engine wrote after a count statement of its own.

    Measured on PostgreSQL over 100k specimens, backend CPU of the count and page statements and of the gated
    one: `Specimen?subject:Patient.identifier=X` 95-105 + 145 us, 185 us; `ResearchSubject?study.identifier=X`
    (2,000 enrolments) 275 + 310 us, 170-180 us: its one target is walked without counting 1,000 references
    (0.3 ms of execution), its page in 0.05 ms instead of 0.27 ms probing 107 enrolments."""
    chain = query.criteria[0]
    assert isinstance(chain, Chain)
    compiler = Compiler(restriction, "postgresql")
    targets, references = probe.chain_targets(chain, compiler), probe.chain_references(chain, compiler)
    pages = [page_statement([query], restriction, [probed], start, limit, "postgresql")
             for probed in (frozenset(), frozenset({0}))]
    one = [] if query.sort else [_one_target(query, chain, restriction, start, limit)]
    walk = "WHEN n = 1 THEN 2 " if one else ""
    decision = Sql(f"SELECT CASE WHEN n >= ? THEN {len(pages) + len(one)} {walk}WHEN ({references.text}) >= ? "
                   f"THEN 1 ELSE 0 END FROM (SELECT COUNT(*) FROM targets) AS x(n)",
                   [probe.CHAIN_TARGETS, *references.params, probe.CHAIN_PROBE_ABOVE])
    return gated(decision, [*pages, *one], undecided=width(restriction) + len(query.sort),
                 targets=targets)


def _one_target(query: Query, chain: Chain, restriction: Restriction, start: Position | None, limit: int) -> Sql:
    """The page in id order of a chain with one target (the CTE `targets`): its references by `chain.param`,
    read in id order from the index of references by target, joined to `resources` until the page is full.
    A resource referencing it twice comes once (DISTINCT ON)."""
    conditions = [Sql("w.ref_id = (SELECT id FROM targets LIMIT 1) AND w.ref_type = (SELECT type FROM targets LIMIT 1) "
                      "AND w.type = ? AND w.param = ?", [chain.param.type_name, chain.param.code]),
                  live("r", query.type, restriction, decided=True)]
    if start is not None:
        conditions.append(after([], "w.id", start))
    condition = all_of(conditions)
    order = order_by([], "w.id", start.backward if start else False)
    return Sql(f"SELECT DISTINCT ON (w.id) {columns('r', restriction)} FROM search_reference w JOIN resources r "
               f"ON r.type = ? AND r.id = w.id{decision_join('r', restriction)} WHERE {condition.text} "
               f"ORDER BY {order.text} LIMIT ?", [query.type, *condition.params, limit])


def gated(decision: Sql, branches: Sequence[Sql], undecided: int = 0, targets: Sql | None = None) -> Sql:
    """`branches` behind one decision: `decision` selects one row, the position of the branch that answers.
    `undecided`: the width of a page row; position `len(branches)` then answers one row of that many NULLs.
    `targets`: a CTE the decision and the branches read (a chain's targets, `_chained`)."""
    gates = [f"SELECT * FROM ({b.text}) AS b{n} WHERE (SELECT driver FROM d) = {n}" for n, b in enumerate(branches)]
    if undecided:
        gates.append(f"SELECT {', '.join(['NULL'] * undecided)} WHERE (SELECT driver FROM d) = {len(branches)}")
    first = [] if targets is None else [Sql(f"targets AS MATERIALIZED ({targets.text})", targets.params)]
    ctes = [*first, Sql(f"d (driver) AS MATERIALIZED ({decision.text})", decision.params)]
    return Sql(f"WITH {', '.join(c.text for c in ctes)} {' UNION ALL '.join(gates)}",
               [*(x for c in ctes for x in c.params), *(x for b in branches for x in b.params)])
