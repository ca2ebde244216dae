"""EHR proxy overhead (issue 9, "Speed"): the gateway proxying the test EHR vs the same
queries sent straight to that EHR, in one run.

The test EHR (tests/ehr/upstream, SMART backend-services auth on) serves `--patients`
synthetic records; the gateway (one uvicorn worker, SQLite, in-process cache, auth off so
the figures are the proxy's own) holds their biobank Patients with MRNs and consents.
Measured, each a `Condition?patient=` search of one patient's record:
- latency, sequential: direct to the EHR; through the gateway on a cache miss
  (`Cache-Control: no-cache`: translation cached, the EHR asked); on a cache hit;
- throughput at concurrency 16 (one asyncio httpx client), direct / miss / hit.
Target: <= 1 ms p50 added on a hit.

    .venv/bin/python bench/proxy.py [--patients 200] [--requests 400] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, VENV_BIN, free_port, wait_http
from gateway.access.tokens import thumbprint
from gateway.ehr.auth import BackendAuth
from gateway.runtime import open_store
from gateway.settings import Settings
from tests.ehr.conftest import EVERYTHING, consent, patient
from tests.ehr.upstream.data import build, mrn

CLIENT_ID = "biobank-gateway-bench"


def key_files(work: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem, jwks = work / "ehr.pem", work / "ehr.jwks.json"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    public["kid"] = thumbprint(public)
    jwks.write_text(json.dumps({"keys": [public]}))
    return pem, jwks


async def seed(url: str, patients: int) -> None:
    store = await open_store(Settings(database_url=url))
    resources = []
    for i in range(1, patients + 1):
        resources += [patient(f"S{i}", mrn(i)), consent(f"C{i}", f"S{i}", EVERYTHING, None)]
    await store.put_many(resources)
    await store.close()


async def direct_token(ehr: str, pem: Path) -> str:
    """A token from the test EHR, got the way the gateway gets its own (for the direct calls)."""
    async with httpx.AsyncClient() as client:
        async def token_url() -> str:
            return ehr.removesuffix("/fhir") + "/auth/token"

        async def post_form(url: str, form: dict[str, str]) -> httpx.Response:
            return await client.post(url, data=form)

        return await BackendAuth(CLIENT_ID, pem.read_bytes(), "system/*.rs", token_url, post_form).token()


async def latencies(client: httpx.AsyncClient, urls: list[str], headers: dict[str, str]) -> list[float]:
    out = []
    for url in urls:
        started = time.perf_counter()
        r = await client.get(url, headers=headers)
        out.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, r.text
    return out


async def throughput(urls: list[str], headers: dict[str, str], seconds: float, concurrency: int = 16) -> float:
    done = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        async def worker(offset: int) -> None:
            nonlocal done
            i = offset
            while time.perf_counter() < deadline:
                r = await client.get(urls[i % len(urls)], headers=headers)
                assert r.status_code == 200, r.text
                done += 1
                i += concurrency

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        return done / (time.perf_counter() - started)


def p50(values: list[float]) -> float:
    return statistics.median(values)


async def run(patients: int, requests: int, seconds: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    pem, jwks = key_files(work)
    ehr_port, gw_port = free_port(), free_port()
    ehr, gw = f"http://127.0.0.1:{ehr_port}/fhir", f"http://127.0.0.1:{gw_port}/fhir"
    db = f"sqlite:///{work}/gateway.db"
    await seed(db, patients)
    env = {**os.environ, "GATEWAY_DATABASE_URL": db, "GATEWAY_DATA_DIR": str(work / "data"), "GATEWAY_BASE_URL": gw,
           "GATEWAY_AUTH_DISABLED": "1", "GATEWAY_EHR_BASE_URL": ehr, "GATEWAY_EHR_CLIENT_ID": CLIENT_ID,
           "GATEWAY_EHR_PRIVATE_KEY": str(pem)}
    env.pop("GATEWAY_REDIS_URL", None)
    procs = [subprocess.Popen([str(VENV_BIN / "python"), "-m", "tests.ehr.upstream", "--port", str(ehr_port),
                               "--patients", str(patients), "--jwks", str(jwks), "--client-id", CLIENT_ID,
                               "--page-size", "50"], cwd=ROOT, env=env),
             subprocess.Popen([str(VENV_BIN / "biobank-gateway"), "serve", "--port", str(gw_port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_http(f"{ehr}/metadata")
        wait_http(f"http://127.0.0.1:{gw_port}/healthz")
        data = build(patients)
        subjects = [1 + n % patients for n in range(requests)]
        direct_urls = [f"{ehr}/Condition?patient={data.patient_by_mrn[mrn(i)]}" for i in subjects]
        gateway_urls = [f"{gw}/Condition?patient=S{i}" for i in subjects]
        direct_auth = {"Authorization": f"Bearer {await direct_token(ehr, pem)}"}
        no_cache = {"Cache-Control": "no-cache"}
        async with httpx.AsyncClient(timeout=30) as client:
            await latencies(client, gateway_urls[:patients], {})  # discovery, token, translations, cache warm
            await latencies(client, direct_urls[:50], direct_auth)
            direct = await latencies(client, direct_urls, direct_auth)
            miss = await latencies(client, gateway_urls, no_cache)
            hit = await latencies(client, gateway_urls, {})
            local = await latencies(client, [f"{gw}/Patient/S{i}" for i in subjects], {})
        rates = {name: await throughput(urls, headers, seconds) for name, urls, headers in (
            ("direct", direct_urls, direct_auth), ("miss", gateway_urls, no_cache), ("hit", gateway_urls, {}))}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
    print(f"\nEHR proxy: Condition?patient= searches, {patients} patients, {requests} sequential requests each,"
          f" throughput at concurrency 16 for {seconds:g} s")
    print(f"{'path':<46} {'p50 ms':>8} {'added p50 ms':>13} {'req/s @16':>10}")
    print(f"{'direct to the test EHR (baseline)':<46} {p50(direct):>8.2f} {'':>13} {rates['direct']:>10.0f}")
    print(f"{'gateway, cache miss (EHR asked)':<46} {p50(miss):>8.2f} {p50(miss) - p50(direct):>13.2f}"
          f" {rates['miss']:>10.0f}")
    print(f"{'gateway, cache hit':<46} {p50(hit):>8.2f} {p50(hit) - p50(direct):>13.2f} {rates['hit']:>10.0f}")
    print(f"{'gateway, local Patient read (no EHR)':<46} {p50(local):>8.2f}")
    print(f"hit minus local read (the proxy's own cost over a stored read): {p50(hit) - p50(local):.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    asyncio.run(run(args.patients, args.requests, args.seconds))


if __name__ == "__main__":
    main()
