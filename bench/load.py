"""Bounded load run over the demo biobank (issue 12): 0 errors at concurrency 32, p99, flat memory.

One `biobank-gateway serve` process on 127.0.0.1 over the synthetic demo biobank (loaded
once into bench/.data/load-<engine>/), a valid SMART token, and an asyncio httpx client
with 32 concurrent loops for a fixed time *and* a fixed request budget, whichever ends
first. Beside it, in the same run, the baseline: `/healthz` at the same concurrency (the
HTTP stack with the gateway's middleware, no store, no access checks). The gateway's RSS is
sampled every second from /proc; the run says whether it stayed flat. Traffic goes to the
loopback interface only.

    .venv/bin/python bench/load.py [--seconds 60] [--concurrency 32] [--max-requests 200000]
                                   [--engine sqlite|postgresql] [--subjects 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, VENV_BIN, cli, free_port, wait_http
from bench.read import pg_database

DATA = ROOT / "bench" / ".data"
Pick = Callable[[random.Random], str]


@dataclass
class Run:
    """Latencies (s) and outcomes of one load phase."""

    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def errors(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome != "ok")

    def row(self, name: str) -> str:
        ordered = sorted(self.latencies)
        p = (lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000) if ordered else (lambda q: 0.0)
        rps = len(self.latencies) / self.seconds if self.seconds else 0.0
        return (f"{name:<34} {len(self.latencies):>9} {self.errors:>7} {rps:>9.0f} {p(0.5):>8.2f} {p(0.99):>8.2f} "
                f"{p(0.999):>9.2f}")


async def hammer(base: str, headers: dict[str, str], pick: Pick, seconds: float, concurrency: int,
                 budget: int) -> Run:
    """`concurrency` loops of GET `pick()` until `seconds` pass or `budget` requests were sent."""
    run, sent = Run(), 0
    deadline = time.monotonic() + seconds
    # Idle connections are dropped by the client before uvicorn's 5 s keep-alive timeout closes them
    # (otherwise a request can race the server's close and fail, as with any HTTP/1.1 client).
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0)

    async def loop(seed: int, http: httpx.AsyncClient) -> None:
        nonlocal sent
        rng = random.Random(seed)
        while time.monotonic() < deadline and sent < budget:
            sent += 1
            start = time.perf_counter()
            try:
                answer = await http.get(pick(rng), headers=headers)
                run.outcomes["ok" if answer.status_code == 200 else str(answer.status_code)] += 1
            except httpx.HTTPError as exc:
                run.outcomes[type(exc).__name__] += 1
            run.latencies.append(time.perf_counter() - start)

    began = time.monotonic()
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        await asyncio.gather(*[loop(n, http) for n in range(concurrency)])
    run.seconds = time.monotonic() - began
    return run


def token_for(env: dict[str, str]) -> str:
    """A staff tool's token that reads every type (what a research portal's back end holds)."""
    client = json.loads(cli(env, "clients", "add", "--name", "load-run", "--kind", "confidential",
                            "--audience", "internal", "--scopes", "user/*.rs", "--redirect-uri", "http://127.0.0.1/cb"))
    return cli(env, "token", "--client", client["client_id"], "--scopes", "user/*.rs", "--lifetime", "3600")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def sample_rss(pid: int, every: float, into: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        into.append(rss_mb(pid))
        await asyncio.sleep(every)


async def ids(base: str, headers: dict[str, str], type_: str) -> list[str]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        bundle = (await http.get(f"/fhir/{type_}?_count=1000", headers=headers)).json()
    found = [entry["resource"]["id"] for entry in bundle.get("entry", [])]
    if not found:
        raise SystemExit(f"no {type_} in the store: is the demo biobank loaded?")
    return found


def workload(specimens: list[str], patients: list[str]) -> Pick:
    """The mix a research portal makes: reads by id, a subject's specimens, a page of a type."""
    def pick(rng: random.Random) -> str:
        roll = rng.random()
        if roll < 0.5:
            return f"/fhir/Specimen/{rng.choice(specimens)}"
        if roll < 0.7:
            return f"/fhir/Patient/{rng.choice(patients)}"
        if roll < 0.9:
            return f"/fhir/Specimen?patient=Patient/{rng.choice(patients)}"
        return "/fhir/Specimen?status=available&_count=20"

    return pick


def flat(samples: list[float]) -> tuple[float, float, bool]:
    """(median RSS of the second quarter, of the last quarter, flat?) — the first quarter is warm-up."""
    quarter = max(1, len(samples) // 4)
    early, late = statistics.median(samples[quarter:2 * quarter]), statistics.median(samples[-quarter:])
    return early, late, late - early <= max(16.0, 0.1 * early)


async def main(args: argparse.Namespace) -> int:
    folder = DATA / f"load-{args.engine}"
    folder.mkdir(parents=True, exist_ok=True)
    database = f"sqlite:///{folder}/gateway.db" if args.engine == "sqlite" else await pg_database("gw_bench_load")
    port = free_port()
    env = {"GATEWAY_DATABASE_URL": database, "GATEWAY_DATA_DIR": str(folder),
           "GATEWAY_BASE_URL": f"http://127.0.0.1:{port}/fhir"}
    print(cli(env, "demo", "--if-empty", "--subjects", str(args.subjects)).splitlines()[-1])
    headers = {"Authorization": f"Bearer {token_for(env)}", "Accept": "application/fhir+json"}
    log = (folder / "gateway.log").open("wb")  # one JSON line per request, as in production
    server = subprocess.Popen([str(VENV_BIN / "biobank-gateway"), "serve", "--host", "127.0.0.1", "--port", str(port)],
                              env={**os.environ, **env}, cwd=ROOT, stdout=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", timeout=300)
        pick = workload(await ids(base, headers, "Specimen"), await ids(base, headers, "Patient"))
        baseline = await hammer(base, {}, lambda _rng: "/healthz", args.baseline_seconds, args.concurrency,
                                args.max_requests)
        rss: list[float] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(server.pid, 1.0, rss, stop))
        load = await hammer(base, headers, pick, args.seconds, args.concurrency, args.max_requests)
        stop.set()
        await sampler
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()

    print(f"\nload run: {args.engine}, {args.subjects} subjects, concurrency {args.concurrency}, "
          f"{load.seconds:.0f} s, budget {args.max_requests} requests")
    print(f"{'':<34} {'requests':>9} {'errors':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9}")
    print(baseline.row("baseline: GET /healthz"))
    print(load.row("demo biobank: reads + searches"))
    if load.errors:
        print(f"errors: {dict(load.outcomes)}")
    early, late, is_flat = flat(rss)
    print(f"gateway RSS: start {rss[0]:.0f} MB, 2nd quarter {early:.0f} MB, last quarter {late:.0f} MB, "
          f"max {max(rss):.0f} MB over {len(rss)} samples -> {'flat' if is_flat else 'GROWING'}")
    return 0 if not load.errors and not baseline.errors and is_flat else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--baseline-seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--subjects", type=int, default=2000)
    raise SystemExit(asyncio.run(main(parser.parse_args())))
