"""Redis is never a single point of failure: stopped mid-run, the gateways keep serving, client
assertions are refused (replay protection fails closed), and all is well once it is back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import httpx

from tests.auth.conftest import JWT_BEARER, assertion
from tests.ops.conftest import Cluster


async def traffic(http: httpx.AsyncClient, cluster: Cluster, stop: asyncio.Event, statuses: Counter[str]) -> None:
    """Reads and writes through both gateways until `stop` (at most 3000 requests)."""
    headers = cluster.headers(cluster.writer)
    id_ = f"steady-{uuid.uuid4().hex[:8]}"
    for n in range(3000):
        if stop.is_set():
            return
        node = (cluster.a, cluster.b)[n % 2]
        try:
            if n % 3 == 0:
                body = {"resourceType": "Patient", "id": id_, "birthDate": f"19{n % 100:02d}-01-01"}
                answer = await http.put(f"{node.url}/fhir/Patient/{id_}", headers=headers, json=body)
            else:
                answer = await http.get(f"{node.url}/fhir/Patient?birthdate=ge1900-01-01&_count=5", headers=headers)
            statuses[str(answer.status_code)] += 1
        except httpx.TransportError as exc:
            statuses[type(exc).__name__] += 1
        await asyncio.sleep(0.02)


async def token_request(http: httpx.AsyncClient, cluster: Cluster, node_url: str) -> httpx.Response:
    signed = assertion(cluster.backend_id, cluster.backend_key, aud=cluster.token_url)
    return await http.post(f"{node_url}/auth/token", data={
        "grant_type": "client_credentials", "scope": "system/Patient.rs",
        "client_assertion_type": JWT_BEARER, "client_assertion": signed})


async def test_redis_stopped_mid_run_service_continues_assertions_fail_closed_then_recover(cluster: Cluster) -> None:
    statuses: Counter[str] = Counter()
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await token_request(http, cluster, cluster.a.url)).status_code == 200
        steady = asyncio.create_task(traffic(http, cluster, stop, statuses))
        try:
            await asyncio.sleep(1.0)
            cluster.redis.kill()
            before = sum(statuses.values())
            await asyncio.sleep(2.0)
            for node in (cluster.a, cluster.b):
                refused = await token_request(http, cluster, node.url)
                assert refused.status_code == 503, refused.text
                assert "Redis" in refused.json()["error_description"], "the refusal says why"
                ready = await http.get(f"{node.url}/readyz")
                assert ready.status_code == 200 and ready.json()["status"] == "degraded"
                assert ready.json()["checks"]["redis"] == "down"
            assert sum(statuses.values()) > before + 10, "requests kept being answered while Redis was down"

            await cluster.redis.up()
            deadline = time.monotonic() + 20
            for node in (cluster.a, cluster.b):
                while (await token_request(http, cluster, node.url)).status_code != 200:
                    assert time.monotonic() < deadline, "assertions still refused after Redis came back"
                    await asyncio.sleep(0.25)
                assert (await http.get(f"{node.url}/readyz")).json()["status"] == "ready"
        finally:
            stop.set()
            await steady
            if cluster.redis.process is not None and cluster.redis.process.poll() is not None:
                await cluster.redis.up()
    assert set(statuses) <= {"200", "201"}, f"requests failed while Redis was down: {dict(statuses)}"
