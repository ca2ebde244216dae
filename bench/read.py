"""Read-by-id throughput and latency (issue 3, "Speed").

100k stored Specimens, one uvicorn worker, wrk at concurrency 16, a valid SMART token and
the access layer on — side by side, in the same run, with (a) a FastAPI route returning the
same bytes from a dict (the framework's ceiling) and (b) a bare ASGI app doing the same.
Target: the gateway at >= 0.5 of (a) on SQLite and on PostgreSQL.

Each access is audited in two steps (gateway/access/audit.py): a compact queue row during the
run, turned into an AuditEvent resource once the gateway is idle. After each gateway run the
benchmark waits until that backlog is drained and also reports the *sustained* rate:
requests / (run time + drain time) — what a gateway that never idles could keep up.

    .venv/bin/python bench/read.py [--specimens 100000] [--seconds 10] [--engines sqlite,postgresql]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, arguments, cli, forget_audit_trail, print_table, server, specimen, wrk
from gateway.runtime import open_store
from gateway.settings import Settings

DATA = ROOT / "bench" / ".data"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"


async def fill(url: str, n: int) -> None:
    """Store n specimens unless they are there already (the fixture is reused across runs)."""
    store = await open_store(Settings(database_url=url))
    try:
        await forget_audit_trail(store.db)
        row = await store.db.fetchone("SELECT COUNT(*) FROM resources WHERE type = 'Specimen'")
        if row and row[0] >= n:
            return
        for start in range(0, n, 5000):
            await store.put_many([specimen(i, n // 5) for i in range(start, min(n, start + 5000))])
            print(f"  stored {min(n, start + 5000)} specimens", end="\r", flush=True)
        print()
    finally:
        await store.close()


async def pg_database(name: str) -> str:
    conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{PG_SERVER}/{name}"


async def queued(url: str) -> int:
    """Accesses in the audit queue not yet turned into AuditEvents."""
    store = await open_store(Settings(database_url=url))
    try:
        row = await store.db.fetchone("SELECT COUNT(*) FROM audit_queue")
        return int(row[0]) if row else 0
    finally:
        await store.close()


def drain_seconds(url: str, timeout: float = 900.0) -> float:
    """Seconds until the (idle) gateway has turned its audit backlog into AuditEvents."""
    started = time.monotonic()
    time.sleep(1.0)  # the last records reach the queue within its flush period
    while asyncio.run(queued(url)) and time.monotonic() - started < timeout:
        time.sleep(0.5)
    return time.monotonic() - started


def token_for(env: dict[str, str]) -> str:
    client = json.loads(cli(env, "clients", "add", "--name", "bench", "--kind", "confidential",
                            "--audience", "internal", "--scopes", "user/*.rs",
                            "--redirect-uri", "http://127.0.0.1/cb"))
    return cli(env, "token", "--client", client["client_id"], "--scopes", "user/Specimen.rs", "--lifetime", "3600")


def main() -> None:
    args = arguments(__doc__).parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    sqlite_file = DATA / f"read-{args.specimens}.db"
    urls = {"sqlite": f"sqlite:///{sqlite_file}"}
    if "postgresql" in args.engines:
        urls["postgresql"] = asyncio.run(pg_database(f"bench_read_{args.specimens}"))
    for engine, url in urls.items():
        print(f"preparing {engine} ...")
        asyncio.run(fill(url, args.specimens))

    rows = []
    env_base = {"BENCH_DB": str(sqlite_file)}
    with server("bench.baselines:raw_app", env_base, factory=True) as base:
        rows.append(("(b) bare ASGI, bytes from a dict", wrk(f"{base}/fhir/Specimen/bench-", args.specimens,
                                                             seconds=args.seconds)))
    with server("bench.baselines:fastapi_app", env_base, factory=True) as base:
        rows.append(("(a) FastAPI, bytes from a dict", wrk(f"{base}/fhir/Specimen/bench-", args.specimens,
                                                           seconds=args.seconds)))
    sustained: list[tuple[str, float, float]] = []
    for engine, url in urls.items():
        env = {"GATEWAY_DATABASE_URL": url, "GATEWAY_DATA_DIR": str(DATA / f"gw-{engine}"),
               "GATEWAY_BASE_URL": "http://127.0.0.1/fhir"}
        token = token_for(env)
        with server("gateway.asgi:app", env) as base:
            figures = wrk(f"{base}/fhir/Specimen/bench-", args.specimens, f"Bearer {token}", args.seconds)
            rows.append((f"gateway read, {engine}, token + access layer", figures))
            drain = drain_seconds(url)
            sustained.append((engine, figures["rps"] * args.seconds / (args.seconds + drain), drain))
    print_table(f"read by id, {args.specimens} specimens, 1 worker, wrk c=16, {args.seconds}s",
                rows, "(a) FastAPI, bytes from a dict")
    bare = dict(rows)["(b) bare ASGI, bytes from a dict"]["rps"]
    for name, figures in rows[2:]:
        print(f"{name}: {figures['rps'] / bare:.2f} of the bare ASGI app")
    fastapi = dict(rows)["(a) FastAPI, bytes from a dict"]["rps"]
    for engine, rate, drain in sustained:
        print(f"gateway read, {engine}, sustained with the audit backlog drained ({drain:.1f} s after the run): "
              f"{rate:.0f} req/s, {rate / fastapi:.2f} of (a)")


if __name__ == "__main__":
    main()
