"""Date ranges (two or more criteria on one date parameter) on PostgreSQL are walked in id order from the
index rows of a walkable criterion beside them, else from the date index table (gateway/search/statement.py,
`driver`, `driven`): the same matches as the usual statement, once each, in id order, page after page."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.access.gate import Restriction
from gateway.search import probe
from gateway.search.engine import SearchEngine
from gateway.search.sql import Compiler
from gateway.served import STORED_TYPES
from gateway.store import Store

from ..conftest import PgDatabases
from .conftest import Gateway, running

RANGE = "collected=ge2024-01-01&collected=lt2025-01-01"
EVERYTHING = Restriction(frozenset(STORED_TYPES))


def _specimen(i: int) -> dict:
    year = 2023 + i % 3
    return {"resourceType": "Specimen", "id": f"sp-{i:03d}", "status": "available" if i % 2 else "unavailable",
            "collection": {"collectedDateTime": f"{year}-0{1 + i % 9}-1{i % 10}"}}


SPECIMENS = [_specimen(i) for i in range(60)]
IN_2024 = sorted(s["id"] for s in SPECIMENS if s["collection"]["collectedDateTime"].startswith("2024"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def ranges(request: pytest.FixtureRequest, pg_databases: PgDatabases) -> AsyncIterator[Gateway]:
    tmp = Path(tempfile.mkdtemp(prefix="gw-ranges-"))
    url = f"sqlite:///{tmp}/gateway.db" if request.param == "sqlite" else await pg_databases.create()
    async for gw in running(url, tmp, lambda: SPECIMENS):
        yield gw


def _store(gw: Gateway) -> Store:
    return gw.app.state.services.store


async def _walk(gw: Gateway, url: str | None, relation: str = "next") -> list[list[str]]:
    """The match ids of every page from `url` on, following the `relation` links."""
    pages: list[list[str]] = []
    while url:
        bundle = (await gw.client.get(url)).json()
        pages.append([e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"])
        url = next((link["url"] for link in bundle["link"] if link["relation"] == relation), None)
    return pages


async def _links(gw: Gateway, url: str) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in (await gw.client.get(url)).json()["link"]}


async def test_only_ranges_are_driven_from_the_date_index(ranges: Gateway) -> None:
    engine = SearchEngine(_store(ranges))
    for params, driven in [(RANGE, True), ("collected=ge2024-01-01", False), (f"{RANGE}&_sort=-_id", False)]:
        query = engine.parse("Specimen", [tuple(p.split("=", 1)) for p in params.split("&")], strict=True)
        sql = (await engine.page_statement([query], EVERYTHING, 11)).sql
        assert ("DISTINCT ON" in sql.text) == (driven and _store(ranges).dialect == "postgresql"), params


async def test_a_walkable_criterion_beside_a_range_drives_the_walk_uncounted(ranges: Gateway) -> None:
    """`status=available` beside the range: its index rows are walked (both engines) and, being the only
    criterion beside the range, it is not counted first; with a second one beside it both are counted."""
    store = _store(ranges)
    engine = SearchEngine(store)
    distinct = "DISTINCT ON (t1.id)" if store.dialect == "postgresql" else "GROUP BY t1.id"
    for params, counted in [(f"{RANGE}&status=available", False),
                            (f"{RANGE}&status=available&status=available,unavailable", True)]:
        query = engine.parse("Specimen", [tuple(p.split("=", 1)) for p in params.split("&")], strict=True)
        sql = (await engine.page_statement([query], EVERYTHING, 11)).sql
        assert distinct in sql.text and "FROM search_token t1" in sql.text, params
        tests = [probe._test(query, i, Compiler(EVERYTHING, store.dialect))
                 for i in range(len(query.criteria))]
        assert any(t is not None for t in tests) == counted, params


async def test_a_range_pages_through_every_match_once_in_id_order(ranges: Gateway) -> None:
    pages = await _walk(ranges, f"/fhir/Specimen?{RANGE}&_count=4")
    assert [i for page in pages for i in page] == IN_2024
    pages = await _walk(ranges, f"/fhir/Specimen?{RANGE}&status=available&_count=3")
    assert [i for page in pages for i in page] == [i for i in IN_2024 if int(i[3:]) % 2]


async def test_previous_links_of_a_range_walk_back(ranges: Gateway) -> None:
    """From the third page, `previous` leads back over the first two pages, in order — walked from the date
    index, and from the index rows of `status` beside the range."""
    second = (await _links(ranges, f"/fhir/Specimen?{RANGE}&_count=4"))["next"]
    third = (await _links(ranges, second))["next"]
    back = await _walk(ranges, (await _links(ranges, third))["previous"], "previous")
    assert back == [IN_2024[4:8], IN_2024[0:4]]
    available = [i for i in IN_2024 if int(i[3:]) % 2]
    second = (await _links(ranges, f"/fhir/Specimen?{RANGE}&status=available&_count=2"))["next"]
    third = (await _links(ranges, second))["next"]
    back = await _walk(ranges, (await _links(ranges, third))["previous"], "previous")
    assert back == [available[2:4], available[0:2]]


async def test_each_half_of_a_range_may_be_met_by_another_date_of_the_resource(ranges: Gateway) -> None:
    """`ge` and `lt` are two criteria, each met by some date of the resource (search.html: AND of the
    criteria): a specimen dated in 2023 and 2026 matches 2024's range whichever index the walk starts from."""
    store = _store(ranges)
    outside = "sp-003"  # collected 2023-04-13, available
    late = 1_780_000_000_000_000  # 2026-05-28
    async with store.db.transaction() as conn:
        await conn.execute("INSERT INTO search_date (type, param, lo, hi, id) VALUES (?, ?, ?, ?, ?)",
                           ["Specimen", "collected", late, late + 1, outside])
    try:
        expected = sorted([*IN_2024, outside])
        assert [i for page in await _walk(ranges, f"/fhir/Specimen?{RANGE}&_count=4") for i in page] == expected
        assert ([i for page in await _walk(ranges, f"/fhir/Specimen?{RANGE}&status=available&_count=4")
                 for i in page] == [i for i in expected if int(i[3:]) % 2])
    finally:
        async with store.db.transaction() as conn:
            await conn.execute("DELETE FROM search_date WHERE type = ? AND id = ? AND lo = ?",
                               ["Specimen", outside, late])


async def test_several_matching_rows_of_the_driving_parameter_give_one_match(ranges: Gateway) -> None:
    """A resource with two index rows of the range's parameter (a repeating element) is still one match."""
    store = _store(ranges)
    row = await store.db.fetchone("SELECT lo, hi FROM search_date WHERE type = ? AND id = ?", ["Specimen", IN_2024[0]])
    assert row is not None
    async with store.db.transaction() as conn:
        await conn.execute("INSERT INTO search_date (type, param, lo, hi, id) VALUES (?, ?, ?, ?, ?)",
                           ["Specimen", "collected", row[0] + 1, row[1] + 1, IN_2024[0]])
    try:
        assert await _walk(ranges, f"/fhir/Specimen?{RANGE}&_count=100") == [IN_2024]
    finally:
        async with store.db.transaction() as conn:
            await conn.execute("DELETE FROM search_date WHERE type = ? AND id = ? AND lo = ?",
                               ["Specimen", IN_2024[0], row[0] + 1])


async def test_several_matching_rows_of_a_driving_token_give_one_match(ranges: Gateway) -> None:
    """A resource with two index rows of the walked token parameter (two codings of one code) is one match."""
    store = _store(ranges)
    first = next(i for i in IN_2024 if int(i[3:]) % 2)
    async with store.db.transaction() as conn:
        await conn.execute("INSERT INTO search_token (type, param, system, code, text, id) VALUES (?, ?, ?, ?, ?, ?)",
                           ["Specimen", "status", "urn:other", "available", None, first])
    try:
        pages = await _walk(ranges, f"/fhir/Specimen?{RANGE}&status=available&_count=100")
        assert pages == [[i for i in IN_2024 if int(i[3:]) % 2]]
    finally:
        async with store.db.transaction() as conn:
            await conn.execute("DELETE FROM search_token WHERE type = ? AND id = ? AND system = ?",
                               ["Specimen", first, "urn:other"])


async def test_the_range_checked_in_one_look_finds_what_a_statement_per_criterion_finds(ranges: Gateway) -> None:
    """Walked from `status`, the criteria on the range's parameter are checked in one look at each walked
    specimen's dates (sql.Compiler.together); sorted by `_sort=_id` the page is not walked and each criterion is
    a statement of its own: the same matches, in the same order."""
    for params in (f"{RANGE}&status=available", f"{RANGE}&collected=ne2024-03-13&status=unavailable",
                   "collected=ge2023-06-01&collected=le2024-06-30&collected=ne2024-01-11&status=available"):
        walked = await ranges.ids(f"Specimen?{params}&_count=100")
        assert walked, params
        assert walked == await ranges.ids(f"Specimen?{params}&_sort=_id&_count=100"), params
