"""`_total`: what a client sees (an integer total, or none) and what the database is asked for it —
`none` asks nothing, `estimate` asks PostgreSQL's planner (SQLite: the exact count), `accurate` counts,
and a restricted principal always gets the exact count (both engines)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from .conftest import Gateway, principal


def _spy(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement the store runs from now on."""
    db = gw.app.state.services.store.db
    statements: list[str] = []
    run = db.fetchall

    async def fetchall(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        statements.append(sql)
        return await run(sql, params)

    monkeypatch.setattr(db, "fetchall", fetchall)
    return statements


def _counted(statements: list[str]) -> bool:
    return any("COUNT(*) FROM resources" in s or s.startswith("EXPLAIN") for s in statements)


@pytest.mark.parametrize("path", ["/fhir/Specimen?_count=1&_total=none", "/fhir/Specimen?_summary=count&_total=none",
                                  "/fhir?_type=Specimen,Patient&_count=1&_total=none"])
async def test_total_none_gives_no_total_and_counts_nothing(gw: Gateway, monkeypatch: pytest.MonkeyPatch,
                                                            path: str) -> None:
    statements = _spy(gw, monkeypatch)
    bundle = (await gw.client.get(path)).json()
    assert "total" not in bundle
    assert not _counted(statements)


async def test_total_estimate_is_an_integer_from_the_planner_on_postgresql(gw: Gateway,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store = gw.app.state.services.store
    if store.dialect == "postgresql":
        await store.db.fetchall("ANALYZE")
    statements = _spy(gw, monkeypatch)
    for path in ("/fhir/Specimen?_count=1&_total=estimate", "/fhir?_type=Specimen,Patient&_count=2&_total=estimate",
                 "/fhir/Specimen?status=available&_summary=count&_total=estimate"):
        statements.clear()
        bundle = (await gw.client.get(path)).json()
        assert isinstance(bundle["total"], int) and bundle["total"] >= 1, path
        asked = "EXPLAIN" if store.dialect == "postgresql" else "COUNT(*)"
        assert any(asked in s for s in statements), (path, statements)
    exact = (await gw.client.get("/fhir/Specimen?_count=1&_total=accurate")).json()
    assert exact["total"] == 5


async def test_a_complete_first_page_is_its_own_total(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    statements = _spy(gw, monkeypatch)
    for total in ("estimate", "accurate"):
        bundle = (await gw.client.get(f"/fhir/Specimen?status=available&_total={total}")).json()
        assert bundle["total"] == 3
    assert not _counted(statements)


async def test_restricted_principal_gets_the_exact_count_for_an_estimate(gw: Gateway,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    gw.act_as(principal("patient/Specimen.rs", "p1"))
    statements = _spy(gw, monkeypatch)
    assert (await gw.client.get("/fhir/Specimen?_count=1&_total=estimate")).json()["total"] == 2
    assert not any(s.startswith("EXPLAIN") for s in statements)
