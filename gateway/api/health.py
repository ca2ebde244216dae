"""Operations endpoints: `/healthz` (the process answers), `/readyz` (its dependencies do) and
`/metrics` (Prometheus text format).

Readiness distinguishes what the gateway cannot serve without from what it only serves
less well without: no database is `down` (503, the load balancer takes the instance out);
Redis or the EHR unreachable is `degraded` (200: the gateway keeps serving from in-process
state and its own store, and says so).
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.context import services_of
from gateway.observability import metrics

router = APIRouter()


@router.get("/healthz", name="healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def _database(request: Request) -> str:
    try:
        await services_of(request).store.db.fetchone("SELECT 1")
        return "up"
    except Exception as exc:  # any driver error means "not ready"
        return f"down: {type(exc).__name__}"


async def _redis(request: Request) -> str:
    if not services_of(request).settings.redis_url:
        return "not-configured"
    return "up" if await request.app.state.cache.ping() else "down"


async def _ehr(request: Request) -> str:
    ehr = request.app.state.ehr
    return "not-configured" if ehr is None else await ehr.status()


@router.get("/readyz", name="readyz")
async def readyz(request: Request) -> Response:
    checks = {"database": await _database(request), "redis": await _redis(request), "ehr": await _ehr(request)}
    if checks["database"] != "up":
        status = "down"
    elif all(value in ("up", "not-configured") for value in checks.values()):
        status = "ready"
    else:
        status = "degraded"
    body = {"status": status, "checks": checks}
    return Response(orjson.dumps(body), status_code=503 if status == "down" else 200, media_type="application/json")


@router.get("/metrics", name="metrics")
async def metrics_text(request: Request) -> Response:
    ehr = request.app.state.ehr
    if ehr is not None:
        metrics.breaker_state(await ehr.client.breaker.state())
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
