"""Date ranges (two or more criteria on one date parameter) on PostgreSQL are walked from the date index
table in id order (gateway/search/statement.py, `_driven`): the same matches as the usual statement, once
each, in id order, page after page."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.access.gate import Restriction
from gateway.search.engine import SearchEngine
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
        sql = await engine.page_statement([query], EVERYTHING, 11)
        assert ("DISTINCT ON" in sql.text) == (driven and _store(ranges).dialect == "postgresql"), params


async def test_a_range_pages_through_every_match_once_in_id_order(ranges: Gateway) -> None:
    pages = await _walk(ranges, f"/fhir/Specimen?{RANGE}&_count=4")
    assert [i for page in pages for i in page] == IN_2024
    pages = await _walk(ranges, f"/fhir/Specimen?{RANGE}&status=available&_count=3")
    assert [i for page in pages for i in page] == [i for i in IN_2024 if int(i[3:]) % 2]


async def test_previous_links_of_a_range_walk_back(ranges: Gateway) -> None:
    """From the third page, `previous` leads back over the first two pages, in order."""
    second = (await _links(ranges, f"/fhir/Specimen?{RANGE}&_count=4"))["next"]
    third = (await _links(ranges, second))["next"]
    back = await _walk(ranges, (await _links(ranges, third))["previous"], "previous")
    assert back == [IN_2024[4:8], IN_2024[0:4]]


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
