"""Limits an operator configures: per-client rate limit (429 + Retry-After, shared through Redis,
off at 0) and the request body limit (413) on every route that takes a body."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from gateway.app import create_app
from tests.conftest import make_settings


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(f"sqlite:///{tmp_path}/gateway.db", tmp_path, **overrides))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # unhandled errors become 500s
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                   base_url="http://testserver") as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


async def test_rate_limit_answers_429_with_retry_after_and_an_operation_outcome(tmp_path: Path) -> None:
    async with gateway(tmp_path, rate_limit=1) as client:
        answers = [await client.get("/fhir/Patient/x") for _ in range(3)]
        assert [a.status_code for a in answers] == [404, 404, 429], "a burst of twice the rate, then 429"
        refused = answers[-1]
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert refused.json()["issue"][0]["code"] == "throttled"
        wait = int(refused.headers["retry-after"])
        assert wait >= 1
        await asyncio.sleep(wait)
        assert (await client.get("/fhir/Patient/x")).status_code == 404, "served again after Retry-After"


async def test_rate_limit_is_one_bucket_across_instances_sharing_redis(tmp_path: Path, redis_url: str,
                                                                        redis_prefix: str) -> None:
    shared = {"rate_limit": 0.5, "redis_url": redis_url, "redis_prefix": redis_prefix}
    async with gateway(tmp_path / "one", **shared) as one, gateway(tmp_path / "two", **shared) as two:
        answers = [await client.get("/fhir/Patient/x") for client in (one, two, one, two)]
    assert sorted(a.status_code for a in answers) == [404, 429, 429, 429], \
        "a burst of 1 for the client, whichever instance it asks"


async def test_no_rate_limit_by_default(tmp_path: Path) -> None:
    async with gateway(tmp_path) as client:
        answers = await asyncio.gather(*[client.get("/fhir/Patient/x") for _ in range(50)])
    assert {a.status_code for a in answers} == {404}


def body_routes(routes: list[BaseRoute]) -> list[tuple[str, str]]:
    """(method, path) of every route of the app that accepts a body, path parameters filled in."""
    fill = {"{type}": "Patient", "{id}": "x", "{job_id}": "x", "{name}": "x"}
    out = []
    for route in routes:
        if (included := getattr(route, "original_router", None)) is not None:
            out += body_routes(included.routes)
        elif isinstance(route, APIRoute):
            path = route.path_format  # without path convertors ({type:stored})
            for param, value in fill.items():
                path = path.replace(param, value)
            out.extend((method, path) for method in sorted(route.methods & {"POST", "PUT", "PATCH"}))
    return out


@pytest.mark.parametrize("send", [
    pytest.param(lambda body: body, id="content-length"),
    pytest.param(lambda body: _chunks(body), id="chunked"),
])
async def test_every_route_that_takes_a_body_refuses_one_over_the_limit_with_413(
        tmp_path: Path, send: Callable[[bytes], object]) -> None:
    oversized = b'{"resourceType":"Patient","text":"' + b"x" * 4096 + b'"}'
    async with gateway(tmp_path, max_body_bytes=1024) as client:
        routes = body_routes(client.app.routes)  # type: ignore[attr-defined]
        assert len(routes) > 10
        for method, path in routes:
            form = path.startswith("/auth/") or path.endswith("/_search")
            content_type = "application/x-www-form-urlencoded" if form else "application/fhir+json"
            answer = await client.request(method, path, content=send(oversized),  # type: ignore[arg-type]
                                          headers={"Content-Type": content_type, "Accept": "application/fhir+json",
                                                   "Prefer": "respond-async"})
            assert answer.status_code == 413, f"{method} {path}: {answer.status_code} {answer.text[:200]}"
            assert answer.json()["resourceType"] == "OperationOutcome"


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 512):
        yield body[start:start + 512]
