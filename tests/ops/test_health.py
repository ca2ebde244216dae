"""`/readyz` tells a load balancer what the gateway can still do: database down is `down` (503);
Redis or the EHR unreachable is `degraded` (200, still serving)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import free_port
from tests.ops.test_limits import gateway


async def test_ready_with_every_dependency_up(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    async with gateway(tmp_path, redis_url=redis_url, redis_prefix=redis_prefix) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "up", "redis": "up", "ehr": "not-configured"}}


async def test_redis_down_is_degraded_not_down(tmp_path: Path) -> None:
    async with gateway(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0") as client:
        ready = await client.get("/readyz")
        assert (await client.get("/fhir/Patient/x")).status_code == 404, "still serving"
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded" and ready.json()["checks"]["redis"] == "down"


async def test_open_ehr_breaker_is_degraded_and_exposed_as_a_metric(tmp_path: Path) -> None:
    async with gateway(tmp_path, ehr_base_url=f"http://127.0.0.1:{free_port()}/fhir") as client:
        assert (await client.get("/readyz")).json()["checks"]["ehr"] == "up"
        breaker = client.app.state.ehr.client.breaker  # type: ignore[attr-defined]
        for _ in range(breaker.failures):
            await breaker.failed(probe=False)
        ready = await client.get("/readyz")
        metrics = (await client.get("/metrics")).text
    assert ready.status_code == 200 and ready.json()["checks"]["ehr"] == "degraded"
    assert "gateway_ehr_breaker_state 2.0" in metrics


async def test_database_down_is_503(tmp_path: Path) -> None:
    async with gateway(tmp_path) as client:
        await client.app.state.services.store.close()  # type: ignore[attr-defined]
        ready = await client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "down"
