"""Killing a gateway (kill -9) in the middle of an export and starting another on the same
database: the job completes — every resource exactly once — or reports an error; it never
stays "in progress" (real `biobank-gateway serve` processes on 127.0.0.1, both engines)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import orjson

from gateway.store import Store
from tests.conftest import free_port, wait_http

SPECIMENS = 3000
KICK_OFF = {"Accept": "application/fhir+json", "Prefer": "respond-async"}


def serve(database_url: str, tmp_path: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "GATEWAY_DATABASE_URL": database_url, "GATEWAY_AUTH_DISABLED": "1",
           "GATEWAY_DATA_DIR": str(tmp_path / "data"), "GATEWAY_BASE_URL": f"http://127.0.0.1:{port}/fhir",
           "GATEWAY_EXPORT_PAGE_SIZE": "5", "GATEWAY_EXPORT_FILE_MAX_BYTES": "20000",
           "GATEWAY_EXPORT_LEASE_SECONDS": "2"}
    command = [str(Path(sys.executable).parent / "biobank-gateway"), "serve", "--port", str(port)]
    return subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def load(database_url: str) -> None:
    store = await Store.open(database_url)
    try:
        await store.put_many([{"resourceType": "Specimen", "id": f"sp{i:05d}", "status": "available",
                               "subject": {"reference": f"Patient/p{i % 100}"}} for i in range(SPECIMENS)])
    finally:
        await store.close()


async def test_killed_gateway_mid_export_then_restart_completes_the_job(database_url: str, tmp_path: Path) -> None:
    await load(database_url)
    first_port, second_port = free_port(), free_port()
    first = serve(database_url, tmp_path, first_port)
    second = None
    try:
        await wait_http(f"http://127.0.0.1:{first_port}/healthz", timeout=60)
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.get(f"http://127.0.0.1:{first_port}/fhir/$export?_type=Specimen", headers=KICK_OFF)
            assert r.status_code == 202, r.text
            job_path = r.headers["content-location"].split("/fhir", 1)[1]
            while True:  # wait until the job has written something, then kill the process
                polled = await http.get(f"http://127.0.0.1:{first_port}/fhir{job_path}")
                assert polled.status_code == 202, "the export finished before it could be interrupted"
                if not polled.headers["x-progress"].endswith(": 0 resources written"):
                    break
                await asyncio.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            first.wait()

            second = serve(database_url, tmp_path, second_port)
            await wait_http(f"http://127.0.0.1:{second_port}/healthz", timeout=60)
            deadline = asyncio.get_running_loop().time() + 60
            while True:
                done = await http.get(f"http://127.0.0.1:{second_port}/fhir{job_path}")
                if done.status_code != 202:
                    break
                assert asyncio.get_running_loop().time() < deadline, "the job stayed in progress"
                await asyncio.sleep(float(done.headers["retry-after"]) / 4)
            assert done.status_code == 200, done.text
            manifest = done.json()
            assert len(manifest["output"]) > 1
            seen: Counter[str] = Counter()
            for item in manifest["output"]:
                f = await http.get(item["url"], headers={"Accept": "application/fhir+ndjson"})
                lines = f.content.splitlines()
                assert len(lines) == item["count"]
                seen.update(orjson.loads(line)["id"] for line in lines)
            assert len(seen) == SPECIMENS and set(seen.values()) == {1}
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
