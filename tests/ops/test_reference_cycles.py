"""Requests leave no reference cycles behind: what a request made is freed when it ends, by reference counting,
not later by the garbage collector (runtime.settle_heap raises its thresholds on that ground). A cycle through
one object of a request (the interaction context and the request, say) keeps everything the request touched
alive until a collection, which then takes milliseconds, in the middle of other requests."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app

from ..conftest import make_settings

SEARCHES = [b"status=available", b"subject:Patient.gender=female", b"_include=Specimen:subject&_count=2", b"bogus=1"]


@pytest.fixture
def saved_garbage() -> Iterator[list[Any]]:
    """What the garbage collector finds from now on, kept for inspection instead of freed."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def _get(app: Any, path: str, query: bytes = b"") -> int:
    """One GET through the ASGI app, without an HTTP client (a client makes cycles of its own)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
             "headers": [(b"host", b"testserver"), (b"accept", b"application/fhir+json")],
             "client": ("127.0.0.1", 5000), "server": ("testserver", 80), "state": {}}
    await app(scope, receive, send)
    return sent[0]["status"]


async def test_reads_and_searches_leave_no_cycles(database_url: str, tmp_path: Path,
                                                  saved_garbage: list[Any]) -> None:
    app = create_app(make_settings(database_url, tmp_path))
    async with app.router.lifespan_context(app):
        for _ in range(2):  # the first requests fill caches and open connections
            statuses = [await _get(app, "/fhir/Specimen", q) for q in SEARCHES]
            statuses += [await _get(app, "/fhir/Specimen/nowhere"), await _get(app, "/fhir/metadata")]
        assert statuses == [200, 200, 200, 200, 404, 200]
        gc.collect()
        saved_garbage.clear()
        for _ in range(5):
            for q in SEARCHES:
                await _get(app, "/fhir/Specimen", q)
            await _get(app, "/fhir/Specimen/nowhere")
        gc.collect()
        ours = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in saved_garbage
                       if type(o).__module__.split(".")[0] in ("gateway", "starlette", "fastapi"))
        assert not ours, f"objects of requests freed only by the garbage collector: {ours.most_common(10)}"
