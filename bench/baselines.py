"""The ceilings the read benchmark compares with: the same bytes served from a dict.

`fastapi_app`: a FastAPI route returning the stored bytes of `/fhir/Specimen/{id}` from a
dict (the framework's own ceiling); `raw_app`: a bare ASGI callable doing the same.
Both read the bytes once at start from the database named by BENCH_DB (a SQLite file).
"""

from __future__ import annotations

import os
import sqlite3

from fastapi import FastAPI
from starlette.responses import Response

from bench.common import bytes_app


def _bytes() -> dict[str, bytes]:
    conn = sqlite3.connect(os.environ["BENCH_DB"])
    rows = conn.execute("SELECT id, content FROM resources WHERE type = 'Specimen'").fetchall()
    conn.close()
    return {r[0]: bytes(r[1]) for r in rows}


def fastapi_app() -> FastAPI:
    data = _bytes()
    app = FastAPI()

    @app.get("/healthz")
    async def health() -> Response:
        return Response(b"{}")

    @app.get("/fhir/Specimen/{id}")
    async def read(id: str) -> Response:
        return Response(data[id], media_type="application/fhir+json; charset=utf-8")

    return app


def raw_app():
    data = _bytes()

    def answer(scope: dict) -> bytes:
        path = scope["path"]
        return data.get(path.rsplit("/", 1)[-1], b"{}") if path.startswith("/fhir/Specimen/") else b"{}"

    return bytes_app(answer)
