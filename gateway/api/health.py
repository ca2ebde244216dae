"""Operations endpoints: `/healthz` (the process answers) and `/readyz` (its dependencies do)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.context import services_of

router = APIRouter()


@router.get("/healthz", name="healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/readyz", name="readyz")
async def readyz(request: Request) -> Response:
    services = services_of(request)
    checks: dict[str, str] = {}
    try:
        await services.store.db.fetchone("SELECT 1")
        checks["database"] = "up"
    except Exception as exc:  # any driver error means "not ready"
        checks["database"] = f"down: {type(exc).__name__}"
    ready = checks["database"] == "up"
    body = {"status": "ready" if ready else "not-ready", "checks": checks}
    return Response(orjson.dumps(body), status_code=200 if ready else 503, media_type="application/json")
