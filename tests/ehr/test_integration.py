"""End to end with real processes on 127.0.0.1: the test EHR (tests/ehr/upstream) and
`biobank-gateway serve` pointed at it, with Redis holding the shared proxy state, real
SMART tokens minted by `biobank-gateway token` for an internal and an external client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.runtime import open_store
from gateway.settings import Settings
from tests.conftest import free_port, wait_http
from tests.ehr.conftest import CLIENT_ID, GatewayKey, seed_biobank
from tests.ehr.test_proxy_disclosure import assert_private
from tests.ehr.upstream.data import Dataset, build, mrn

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "biobank-gateway")
TIMEOUT = 2.0
PATIENTS = 8


@dataclass
class Deployment:
    gateway: str
    upstream_port: int
    upstream_args: list[str]
    env: dict[str, str]
    internal: dict[str, str]
    external: dict[str, str]
    upstream: subprocess.Popen[bytes] | None = None

    async def start_upstream(self) -> None:
        self.upstream = subprocess.Popen(self.upstream_args, cwd=ROOT, env=self.env)
        await wait_http(f"http://127.0.0.1:{self.upstream_port}/fhir/metadata")

    def stop_upstream(self) -> None:
        if self.upstream is not None and self.upstream.poll() is None:
            self.upstream.send_signal(signal.SIGCONT)
            self.upstream.kill()
            self.upstream.wait()


def _cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run([CLI, *args], env=env, cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def _token(env: dict[str, str], audience: str, jwks: Path) -> dict[str, str]:
    client = json.loads(_cli(env, "clients", "add", "--name", f"{audience}-app", "--kind", "backend", "--audience",
                             audience, "--scopes", "system/*.rs", "--jwks", str(jwks)).splitlines()[-1])
    token = _cli(env, "token", "--client", client["client_id"], "--scopes", "system/*.rs").splitlines()[-1]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def deployment(tmp_path_factory: pytest.TempPathFactory, gateway_key: GatewayKey,
                     redis_url: str) -> AsyncIterator[Deployment]:
    work = tmp_path_factory.mktemp("ehr-e2e")
    jwks = work / "gateway-ehr.jwks.json"
    jwks.write_text(json.dumps(gateway_key.jwks))
    up_port, gw_port = free_port(), free_port()
    prefix = f"gwtest:ehr-e2e:{uuid.uuid4().hex[:8]}:"
    env = {**os.environ, "GATEWAY_DATABASE_URL": f"sqlite:///{work}/gateway.db", "GATEWAY_DATA_DIR": str(work / "data"),
           "GATEWAY_BASE_URL": f"http://127.0.0.1:{gw_port}/fhir", "GATEWAY_REDIS_URL": redis_url,
           "GATEWAY_REDIS_PREFIX": prefix, "GATEWAY_EHR_BASE_URL": f"http://127.0.0.1:{up_port}/fhir",
           "GATEWAY_EHR_CLIENT_ID": CLIENT_ID, "GATEWAY_EHR_PRIVATE_KEY": str(gateway_key.pem),
           "GATEWAY_EHR_TIMEOUT": str(TIMEOUT), "GATEWAY_EHR_BREAKER_RESET": "3"}
    env.pop("GATEWAY_AUTH_DISABLED", None)
    store = await open_store(Settings(database_url=env["GATEWAY_DATABASE_URL"]))
    await seed_biobank(store)
    await store.close()
    deployment = Deployment(
        f"http://127.0.0.1:{gw_port}", up_port,
        [sys.executable, "-m", "tests.ehr.upstream", "--port", str(up_port), "--patients", str(PATIENTS),
         "--jwks", str(jwks), "--client-id", CLIENT_ID],
        env, _token(env, "internal", jwks), _token(env, "external", jwks))
    await deployment.start_upstream()
    gateway = subprocess.Popen([CLI, "serve", "--port", str(gw_port)], cwd=ROOT, env=env)
    try:
        await wait_http(f"{deployment.gateway}/healthz")
        yield deployment
    finally:
        gateway.terminate()
        gateway.wait(10)
        deployment.stop_upstream()
        import redis

        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return build(PATIENTS)


async def get(d: Deployment, path: str, headers: dict[str, str], **params: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=d.gateway, timeout=30) as client:
        return await client.get(path, params=params, headers={**headers, "Cache-Control": "no-cache"})


async def test_internal_token_sees_the_real_ehr_ids(deployment: Deployment, dataset: Dataset) -> None:
    r = await get(deployment, "/fhir/Condition", deployment.internal, patient="Patient/S1")
    assert r.status_code == 200, r.text
    ehr_patient = dataset.patient_by_mrn[mrn(1)]
    expected = {c["id"] for c in dataset.resources["Condition"].values()
                if c["subject"]["reference"] == f"Patient/{ehr_patient}"}
    assert {e["resource"]["id"] for e in r.json()["entry"]} == expected
    assert f"127.0.0.1:{deployment.upstream_port}" not in r.text


async def test_external_token_sees_pseudonymised_data_of_consenting_donors_only(deployment: Deployment,
                                                                                dataset: Dataset) -> None:
    r = await get(deployment, "/fhir/Observation", deployment.external, patient="Patient/S1", _count="100")
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert entries and all(e["resource"]["subject"] == {"reference": "Patient/S1"} for e in entries)
    texts = [r.text]
    for subject in ("S2", "S3", "S4", "S5", "S6"):
        other = await get(deployment, "/fhir/Observation", deployment.external, patient=subject)
        assert other.status_code == 200 and other.json()["entry"] == [], subject
        texts.append(other.text)
    read = await get(deployment, f"/fhir/Observation/{entries[0]['resource']['id']}", deployment.external)
    assert read.status_code == 200
    texts.append(read.text)
    summary = await get(deployment, "/fhir/Patient/S1/$ehr-summary", deployment.external)
    assert summary.status_code == 200 and summary.json()["entry"]
    texts.append(summary.text)
    assert (await get(deployment, "/fhir/Condition", deployment.external, code="I10")).status_code == 400
    for text in texts:
        assert_private(text.replace(f"127.0.0.1:{deployment.upstream_port}", "ehr.test"), dataset)


async def test_killing_the_ehr_fails_fast_keeps_specimens_served_and_recovers(deployment: Deployment) -> None:
    headers = deployment.internal
    assert (await get(deployment, "/fhir/Condition", headers, patient="S1")).status_code == 200
    assert deployment.upstream is not None
    deployment.upstream.send_signal(signal.SIGSTOP)  # hung: connections accepted, nothing answered
    started = time.monotonic()
    hung = await get(deployment, "/fhir/Condition", headers, patient="S1")
    assert hung.status_code == 504 and hung.json()["resourceType"] == "OperationOutcome"
    assert time.monotonic() - started < TIMEOUT + 1.0
    deployment.stop_upstream()  # dead: connections refused
    statuses = []
    for _ in range(6):
        started = time.monotonic()
        r = await get(deployment, "/fhir/Condition", headers, patient="S1")
        assert time.monotonic() - started < TIMEOUT + 1.0
        statuses.append(r.status_code)
    assert statuses[0] == 502 and statuses[-1] == 503, statuses
    assert int(r.headers["retry-after"]) >= 1
    ready = (await get(deployment, "/readyz", {})).json()
    assert ready["status"] == "degraded" and ready["checks"]["ehr"] == "degraded"
    specimens = await get(deployment, "/fhir/Specimen", headers, subject="Patient/S1")
    assert specimens.status_code == 200 and specimens.json()["entry"][0]["resource"]["id"] == "SPS1"
    await deployment.start_upstream()
    deadline = time.monotonic() + 45  # the breaker's reset (30 s by default) plus slack
    while True:
        r = await get(deployment, "/fhir/Condition", headers, patient="S1")
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        assert r.status_code == 503, r.text  # open until the half-open probe
        await asyncio.sleep(0.5)
    assert r.status_code == 200 and r.json()["entry"]
