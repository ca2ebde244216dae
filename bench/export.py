"""Bulk export speed and memory: a system export of N Specimens, against a raw cursor read.

    .venv/bin/python bench/export.py                # 10k and 100k Specimens on SQLite
    .venv/bin/python bench/export.py --sizes 10000 --database-url postgresql://postgres@127.0.0.1/bench

For each size it generates the specimens (`store.put_many`, batches of 5,000), then runs, each
in a fresh process so peak RSS belongs to that run alone:
- baseline: the same rows read by a raw driver cursor and written to a file, nothing else;
- export: the gateway's job runner (keyset pages, egress gate, NDJSON files) for an internal
  principal with `system/*.rs`.
Prints resources/s and peak RSS (MiB) of both. Target: >= 10,000 resources/s, and the same
peak memory for 10k and 100k (the export streams).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import specimen


async def generate(url: str, n: int) -> None:
    from gateway.runtime import open_store
    from gateway.settings import Settings

    store = await open_store(Settings(database_url=url))
    try:
        for start in range(0, n, 5000):
            await store.put_many(specimen(i, n // 5) for i in range(start, min(n, start + 5000)))
    finally:
        await store.close()


async def baseline(url: str, out: Path) -> tuple[int, float]:
    """The floor: the rows of a raw cursor straight into a file."""
    from gateway.store.database import open_database

    db = await open_database(url)
    n = 0
    start = time.perf_counter()
    with open(out, "wb", buffering=1 << 20) as f:
        async for row in db.stream("SELECT content FROM resources WHERE type = ? AND deleted = ? ORDER BY id",
                                   ("Specimen", False), batch=1000):
            f.write(bytes(row[0]))
            f.write(b"\n")
            n += 1
    seconds = time.perf_counter() - start
    await db.close()
    return n, seconds


async def export(url: str, data_dir: Path) -> tuple[int, float]:
    from gateway.access.gate import Gate
    from gateway.access.principal import Principal
    from gateway.access.scopes import Scopes
    from gateway.bulk.request import parse
    from gateway.bulk.service import Exports
    from gateway.runtime import open_store
    from gateway.search.engine import SearchEngine
    from gateway.served import STORED_TYPES
    from gateway.settings import Settings

    settings = Settings(database_url=url, data_dir=data_dir)
    store = await open_store(settings)
    exports = await Exports.start(store, Gate(STORED_TYPES, store), SearchEngine(store), settings)
    who = Principal("bench", "internal", Scopes.parse("system/*.rs"))
    start = time.perf_counter()
    job = await exports.kick_off(who, parse("system", "bench", [("_type", "Specimen")], strict=True))
    while (job := await exports.job_of(who, job.id)).active:
        await asyncio.sleep(0.01)
    seconds = time.perf_counter() - start
    assert job.status == "completed", job.error
    await exports.stop()
    await store.close()
    return job.written, seconds


def child(kind: str, url: str, work: Path) -> None:
    n, seconds = asyncio.run(baseline(url, work / "baseline.ndjson") if kind == "baseline" else export(url, work))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "seconds": seconds, "peak_mib": peak_mib}))


def measure(kind: str, url: str, work: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--database-url", url, "--work", str(work)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--database-url", help="an empty database per size is needed; default: a SQLite file each")
    parser.add_argument("--child", choices=["baseline", "export"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.database_url, args.work)
        return
    print(f"{'specimens':>10} {'what':<9} {'resources/s':>12} {'seconds':>8} {'peak RSS MiB':>13}")
    for n in (int(s) for s in args.sizes.split(",")):
        work = Path(tempfile.mkdtemp(prefix=f"bench-export-{n}-"))
        url = args.database_url or f"sqlite:///{work}/bench.db"
        asyncio.run(generate(url, n))
        for kind in ("baseline", "export"):
            r = measure(kind, url, work)
            assert r["n"] == n, r
            print(f"{n:>10} {kind:<9} {n / r['seconds']:>12,.0f} {r['seconds']:>8.2f} {r['peak_mib']:>13.1f}")


if __name__ == "__main__":
    main()
