"""An in-process gateway with the access tests' small biobank loaded, a principal chosen by
each test, and the few calls of a Bulk Data client (kick-off, poll, download)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.requests import Request

from gateway.access.principal import Principal
from gateway.access.scopes import Scopes
from gateway.app import create_app
from gateway.fhir.errors import FhirError
from tests.access.corpus import resources
from tests.conftest import make_settings

KICK_OFF = {"Accept": "application/fhir+json", "Prefer": "respond-async"}
TOKEN = {"Authorization": "Bearer test-token"}


def principal(audience: str = "internal", scopes: str = "system/*.rs", client: str | None = None) -> Principal:
    return Principal(client or f"{audience}-client", audience, Scopes.parse(scopes))  # type: ignore[arg-type]


@dataclass
class Bulk:
    """A Bulk Data client of the in-process gateway; `who` is the principal behind its token."""

    http: httpx.AsyncClient
    app: Any
    who: Principal = field(default_factory=principal)

    async def kick_off(self, path: str = "/fhir/$export", params: dict[str, str] | list | None = None,
                       headers: dict[str, str] | None = None, body: dict | None = None) -> httpx.Response:
        sent = {**TOKEN, **KICK_OFF, **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/fhir+json"
            return await self.http.post(path, params=params, content=orjson.dumps(body), headers=sent)
        return await self.http.get(path, params=params, headers=sent)

    async def wait(self, location: str, timeout: float = 30.0) -> httpx.Response:
        """Poll as the IG says: while 202, wait Retry-After (shortened here) and ask again."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            r = await self.http.get(location, headers={**TOKEN, "Accept": "application/json"})
            if r.status_code != 202:
                return r
            assert int(r.headers["retry-after"]) > 0 and r.headers["x-progress"]
            assert asyncio.get_running_loop().time() < deadline, "export still in progress"
            await asyncio.sleep(0.05)

    async def export(self, path: str = "/fhir/$export", params: dict[str, str] | list | None = None) -> dict:
        kicked = await self.kick_off(path, params)
        assert kicked.status_code == 202, kicked.text
        done = await self.wait(kicked.headers["content-location"])
        assert done.status_code == 200, done.text
        return done.json()

    async def lines(self, manifest: dict) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = {}
        for item in manifest["output"]:
            r = await self.http.get(item["url"], headers={**TOKEN, "Accept": "application/fhir+ndjson"})
            assert r.status_code == 200, r.text
            out.setdefault(item["type"], []).extend(r.content.splitlines())
        return out


@pytest.fixture
async def bulk(database_url: str, tmp_path: Path) -> AsyncIterator[Bulk]:
    app = create_app(make_settings(database_url, tmp_path))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            client = Bulk(http, app)

            async def authenticate(request: Request) -> Principal:
                if not request.headers.get("authorization"):
                    raise FhirError.of(401, "login", "this request needs a Bearer token",
                                       headers={"WWW-Authenticate": "Bearer"})
                return client.who

            app.state.services.authenticate = authenticate
            await app.state.services.store.put_many(resources())
            yield client
