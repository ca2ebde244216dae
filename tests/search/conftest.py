"""One gateway per engine (SQLite file, fresh PostgreSQL database) with the hand-written corpus
loaded, shared by the read-only search tests of a module."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request

from gateway.access.principal import DEV_PRINCIPAL, Principal
from gateway.access.scopes import Scopes
from gateway.app import create_app
from gateway.search.shapes import KeptStatements

from ..conftest import PgDatabases, make_settings
from .corpus import ALL


class Gateway:
    """A running in-process gateway, its client, and a way to change who is asking."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    def act_as(self, principal: Principal) -> None:
        async def authenticate(_: Request) -> Principal:
            return principal
        self.app.state.services.authenticate = authenticate

    async def ids(self, query: str, **headers: str) -> list[str]:
        """Ids of the match entries of `GET /fhir/<query>`, in Bundle order (asserts 200)."""
        r = await self.client.get(f"/fhir/{query}", headers=headers)
        assert r.status_code == 200, (query, r.text)
        return [e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]


def principal(scopes: str, patient: str | None = None) -> Principal:
    return Principal("test", "internal", Scopes.parse(scopes), patient)


async def running(database_url: str, tmp: Path, load: Callable[[], list[dict]] = lambda: ALL
                  ) -> AsyncIterator[Gateway]:
    app = create_app(make_settings(database_url, tmp))
    async with app.router.lifespan_context(app):
        await app.state.services.store.put_many(load())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Gateway(app, client)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def gateway(request: pytest.FixtureRequest, pg_databases: PgDatabases) -> AsyncIterator[Gateway]:
    """The corpus on both engines; tests that change the principal restore the dev one."""
    tmp = Path(tempfile.mkdtemp(prefix="gw-search-"))
    url = f"sqlite:///{tmp}/gateway.db" if request.param == "sqlite" else await pg_databases.create()
    async for gw in running(url, tmp):
        yield gw


@pytest.fixture
async def gw(gateway: Gateway) -> AsyncIterator[Gateway]:
    yield gateway
    gateway.act_as(DEV_PRINCIPAL)


def set_bounds(monkeypatch: pytest.MonkeyPatch, bounds: dict[tuple[Any, str], Any]) -> None:
    """Bounds of gated.py and probe.py set for one test; statements are then written anew, not taken from those
    kept for the bounds of other tests (shapes.py keeps a statement per query shape, for the bounds it has)."""
    for (module, name), value in bounds.items():
        monkeypatch.setattr(module, name, value)
    monkeypatch.setattr(KeptStatements, "statement",
                        lambda _, purpose, queries, restriction, build: build(queries, restriction))


def recorded_statements(gw: Gateway, monkeypatch: pytest.MonkeyPatch, method: str) -> list[str]:
    """The statements the database's `method` runs from now on, in order."""
    db = gw.app.state.services.store.db
    seen: list[str] = []
    run = getattr(db, method)

    async def recorded(sql: str, params: Any = ()) -> Any:
        seen.append(sql)
        return await run(sql, params)

    monkeypatch.setattr(db, method, recorded)
    return seen


def point_statements(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements that go to the point pool from now on (SQLite: the same reader), in order."""
    return recorded_statements(gw, monkeypatch, "fetch_points")


async def pages_forward(gw: Gateway, page: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Ids from `page` on, page by page through the next links, and the last page."""
    ids: list[str] = []
    while True:
        ids += [e["resource"]["id"] for e in page.get("entry", [])]
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not following:
            return ids, page
        page = (await gw.client.get(following[0].removeprefix("http://testserver"))).json()
