"""Statements whose plan does not depend on their values run with a generic plan on PostgreSQL, planned once
per connection (the point pool, `plan_cache_mode = force_generic_plan`, sql.fetch_generic): pages walked in
id order from one criterion, pages of counted chains, the counts, includes (pages that decide their own plan:
test_gated_pages.py). A cached plan must still answer for the values of each run: one statement text, run far
more often than the five runs after which PostgreSQL may keep a plan, gives each value its own matches, the
same as a statement planned for them (both engines)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.access.gate import Restriction
from gateway.search import probe
from gateway.search.engine import SearchEngine
from gateway.served import STORED_TYPES

from .conftest import Gateway, pages_forward, point_statements, set_bounds

EVERYTHING = Restriction(frozenset(STORED_TYPES))
BY_PATIENT = {"p1": ["s1", "s2"], "p2": ["s3", "s5"], "p3": ["s4"]}
BY_STATUS = {"available": ["s1", "s2", "s4"], "unavailable": ["s3"], "entered-in-error": ["s5"]}
BY_MRN = {"M1": BY_PATIENT["p1"], "M2": BY_PATIENT["p2"], "M3": BY_PATIENT["p3"], "M9": []}
BY_STUDY = {"TRC-2024-017": ["rs1", "rs2"], "TRC-2023-001": ["rs3"], "TRC-0000-000": []}


def _rounds(cases: dict[str, list[str]], rounds: int = 4) -> Iterator[tuple[str, list[str]]]:
    """Every case, over and over, alternating values: each statement text runs far more than five times."""
    for _ in range(rounds):
        yield from cases.items()


def _engine(gw: Gateway) -> SearchEngine:
    return gw.app.state.services.search


async def test_a_page_walked_from_one_criterion_answers_for_each_value(gw: Gateway,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`subject=Patient/X` and `status=X` alone are walked in id order, with a generic plan on PostgreSQL: the
    same ids as the statement sorted by `_sort=_id` (an id list planned for its values)."""
    seen = point_statements(gw, monkeypatch)
    cases = {**{f"Specimen?subject=Patient/{p}": ids for p, ids in BY_PATIENT.items()},
             **{f"Specimen?status={s}": ids for s, ids in BY_STATUS.items()}}
    for query, expected in _rounds(cases):
        assert await gw.ids(query) == expected, query
        assert await gw.ids(query + "&_sort=_id") == expected, query
    walked = [sql for sql in seen if "JOIN resources r ON" in sql]
    assert len(walked) == 4 * len(cases)
    assert len(set(walked)) == 2  # one statement text per parameter, whatever the value


async def test_a_walked_page_pages_through_every_match_once(gw: Gateway) -> None:
    """The walk starts after the page token's id (and before it, backwards)."""
    seen, page = await pages_forward(gw, (await gw.client.get("/fhir/Specimen?status=available&_count=1")).json())
    assert seen == BY_STATUS["available"]
    previous = [link["url"] for link in page["link"] if link["relation"] == "previous"]
    back = (await gw.client.get(previous[0].removeprefix("http://testserver"))).json()
    assert [e["resource"]["id"] for e in back["entry"]] == ["s2"]


@pytest.mark.parametrize("probed", [False, True])
async def test_a_counted_chain_answers_for_each_value(gw: Gateway, monkeypatch: pytest.MonkeyPatch,
                                                      probed: bool) -> None:
    """A chain through few targets is counted, then collected (few references) or, probed, walked with its
    targets as one array (sql.Compiler._chain): either page runs with a generic plan on PostgreSQL and finds
    each value's own matches, none for a value without targets."""
    if probed:
        set_bounds(monkeypatch, {(probe, "CHAIN_PROBE_ABOVE"): 1})
    cases = {**{f"Specimen?subject:Patient.identifier=urn:mrn|{m}": ids for m, ids in BY_MRN.items()},
             **{f"ResearchSubject?study.identifier=urn:study|{s}": ids for s, ids in BY_STUDY.items()}}
    for query, expected in _rounds(cases):
        assert await gw.ids(query) == expected, query


async def test_which_pages_are_planned_once(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """Generic: one walkable criterion in id order, criteria all counted and few (PostgreSQL counts chains,
    SQLite plain criteria; its reader has no plan cache anyway), and on PostgreSQL the pages that decide their
    own plan (gated.py: several criteria with a walkable one, in id order; one chain). Planned for the values:
    uncounted criteria, any other order, several types, chains through many targets, and a type confined to a
    patient's compartment, which is not walked (its compartment index finds the patient's few resources)."""
    engine = _engine(gw)
    postgresql = engine.store.dialect == "postgresql"

    async def generic(query: str, restriction: Restriction = EVERYTHING, types: tuple[str, ...] = ()) -> bool:
        type_, _, params = query.partition("?")
        pairs = [(k, v) for k, _, v in (p.partition("=") for p in params.split("&"))]
        queries = (engine.parser(True).parse_many(types, pairs) if types else [engine.parse(type_, pairs, True)])
        return (await engine.page_statement(queries, restriction, 11)).generic

    assert await generic("Specimen?subject=Patient/p1")
    assert await generic("Specimen?status=available")
    assert await generic("Specimen?status=available&subject=Patient/p1")  # SQLite: counted and few; PostgreSQL: gated
    # PostgreSQL counts no plain criterion (its planner weighs them); SQLite counts them, and these are few.
    for query in ("Specimen?status=available&_sort=-_lastUpdated", "Specimen?status=available,unavailable"):
        assert await generic(query) == (not postgresql), query
    assert await generic("Specimen?subject:Patient.identifier=urn:mrn|M1") == postgresql
    set_bounds(monkeypatch, {(probe, "CHAIN_TARGETS"): 1})  # both chains through many targets: the planner weighs them
    assert not await generic("Specimen?subject:Patient.gender=female&subject:Patient.identifier=urn:mrn|M1")
    assert not await generic("?_tag=urn:tag|pilot", types=("Specimen", "Patient"))
    confined = Restriction(frozenset(STORED_TYPES), confined=frozenset({"Specimen"}), compartments=frozenset({"p1"}))
    planned = await engine.page_statement([engine.parse("Specimen", [("status", "available")], True)], confined, 11)
    assert "JOIN resources r ON" not in planned.sql.text
    assert planned.generic == (not postgresql)
