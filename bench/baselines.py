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


def raw_app():  # noqa: ANN201 - an ASGI callable
    data = _bytes()
    headers = [(b"content-type", b"application/fhir+json; charset=utf-8")]

    async def app(scope, receive, send):  # noqa: ANN001, ANN202
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        body = data.get(path.rsplit("/", 1)[-1], b"{}") if path.startswith("/fhir/Specimen/") else b"{}"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app
