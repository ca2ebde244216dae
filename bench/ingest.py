"""Ingestion benchmark: synthetic exports of N subjects loaded into SQLite and PostgreSQL.

    .venv/bin/python bench/ingest.py [--subjects 5000 20000] [--seed 1] [--workers N] [--no-postgres]
                                     [--no-validate]

Prints, per export size and store: wall time of the whole load (both passes, mapping,
profile validation, index extraction, writes, Groups, Provenance), rows/s, the CPU time of
the loading process and its workers (on a shared machine the wall time also measures the
others' load; the CPU time hardly), and peak memory:
the RSS of the loading process and its worker processes summed, sampled every 50 ms (and
the loading process's own peak). Each load runs in its own process, so its memory is its
own. With two sizes or more (the default: 5,000 and 20,000 subjects) it ends with the peaks
side by side per store and their ratio: flat memory means a ratio near 1 for 4x the rows.
`--workers`: worker processes of the load (default: one per CPU; 0 = all in the loading
process, as before the worker pool). Baseline measured in the same run: plain
`csv.reader` over the same files (the floor any CSV ingestion pays); the load's ratio to it
is printed. Targets (issue #6): 20,000 subjects (~135k rows) in <= 60 s on 2 cores, peak
memory independent of the export's size.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.ingest import load, write_demo_export  # noqa: E402
from gateway.runtime import open_store  # noqa: E402
from gateway.settings import Settings  # noqa: E402

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
TARGET_SECONDS = 60.0
TARGET_SUBJECTS = 20_000
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def baseline(folder: Path) -> tuple[int, float]:
    """Rows and seconds for csv.reader alone over the export."""
    start, rows = time.perf_counter(), 0
    for path in sorted(folder.glob("*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows += sum(1 for _ in csv.reader(handle)) - 1
    return rows, time.perf_counter() - start


class TreeUsage:
    """Peak of the summed RSS of this process and its descendants (the load's workers), and the CPU
    time they used meanwhile, from /proc. CPU seconds are what a shared machine does not blur: the
    wall time of a load grows with what others run, its CPU time hardly."""

    def __init__(self, interval: float = 0.05) -> None:
        self.peak = 0
        self._cpu: dict[int, int] = {}  # pid -> CPU ticks last seen
        self._before = 0
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeUsage:
        self._before = sum(_ticks(pid) for pid in _tree(os.getpid()))
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()
        self._note(_tree(os.getpid()))

    @property
    def cpu_seconds(self) -> float:
        return (sum(self._cpu.values()) - self._before) / TICKS

    def _sample(self) -> None:
        while not self._done.wait(self._interval):
            pids = _tree(os.getpid())
            self.peak = max(self.peak, sum(_rss(pid) for pid in pids))
            self._note(pids)

    def _note(self, pids: list[int]) -> None:
        self._cpu.update((pid, ticks) for pid in pids if (ticks := _ticks(pid)))


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (workers are children of a forkserver, itself a child)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child_pid in children:
            found += _tree(int(child_pid))
    return found


def _ticks(pid: int) -> int:
    """User + system CPU time of `pid` in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


async def child(url: str, folder: str, validate: bool, workers: int | None) -> None:
    """Runs in a subprocess: one load (with the write hooks `biobank-gateway load` has, the consent
    decisions' included), then its figures as JSON on stdout."""
    store = await open_store(Settings(database_url=url))
    with TreeUsage() as usage:
        start = time.perf_counter()
        report = await load(store, folder, validator=None if validate else _NoValidator(), workers=workers)
        seconds = time.perf_counter() - start
    await store.close()
    rows = sum(c.read for c in report.record_sets.values())
    print(json.dumps({"seconds": seconds, "rows": rows, "rejects": len(report.rejects), "reconciled": report.reconciled,
                      "peak_tree_mb": usage.peak / 2**20, "cpu_seconds": usage.cpu_seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


class _NoValidator:
    def validate(self, resource: dict) -> list:
        return []


def run_child(url: str, folder: Path, validate: bool, workers: int | None) -> dict[str, Any]:
    flags = ([] if validate else ["--no-validate"]) + ([] if workers is None else ["--workers", str(workers)])
    command = [sys.executable, __file__, "--child", url, str(folder), *flags]
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


async def pg_admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, nargs="+", default=[5_000, TARGET_SUBJECTS],
                        help="export sizes to load, one after the other (default: 5000 20000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per CPU; 0: none)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-validate", action="store_true", help="skip profile validation (to see its share)")
    parser.add_argument("--child", nargs=2, metavar=("URL", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.child[0], args.child[1], not args.no_validate, args.workers))
        return
    stores = ["sqlite"] + (["postgresql"] if not args.no_postgres and postgres_reachable() else [])
    peaks: dict[str, list[tuple[int, dict[str, Any]]]] = {name: [] for name in stores}
    for subjects in args.subjects:
        for name, result in bench_size(subjects, args.seed, stores, args.workers, not args.no_validate):
            peaks[name].append((subjects, result))
    if len(args.subjects) > 1:
        for name, results in peaks.items():
            (small, first), (large, last) = min(results, key=lambda r: r[0]), max(results, key=lambda r: r[0])
            print(f"memory    {name:<10} peak {first['peak_rss_mb']:.0f} MB at {small:,} subjects, "
                  f"{last['peak_rss_mb']:.0f} MB at {large:,} (x{last['peak_rss_mb'] / first['peak_rss_mb']:.2f}) "
                  f"loading process; with workers {first['peak_tree_mb']:.0f} MB, {last['peak_tree_mb']:.0f} MB "
                  f"(x{last['peak_tree_mb'] / first['peak_tree_mb']:.2f}) for x{last['rows'] / first['rows']:.1f} rows")


def bench_size(subjects: int, seed: int, stores: list[str], workers: int | None,
               validate: bool) -> list[tuple[str, dict[str, Any]]]:
    """Write an export of `subjects`, load it into each store; print and return each load's figures."""
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        folder = Path(tmp) / "export"
        start = time.perf_counter()
        info = write_demo_export(folder, subjects, seed)
        print(f"demo-data: {subjects:,} subjects, rows {info['rows']} in {time.perf_counter() - start:.1f} s")
        rows, seconds = baseline(folder)
        base_rate = rows / seconds
        print(f"baseline  csv.reader only            {rows:>9,} rows {seconds:7.2f} s {base_rate:>10,.0f} rows/s")
        database = f"bench_ingest_{int(time.time())}"
        urls = {"sqlite": f"sqlite:///{Path(tmp) / 'store.db'}", "postgresql": f"{PG_SERVER}/{database}"}
        if "postgresql" in stores:
            asyncio.run(pg_admin(f'CREATE DATABASE "{database}"'))
        try:
            for name in stores:
                result = run_child(urls[name], folder, validate, workers)
                rate = result["rows"] / result["seconds"]
                verdict = "met" if result["seconds"] <= TARGET_SECONDS else "MISSED"
                target = f"target {TARGET_SECONDS:.0f} s {verdict}" if subjects == TARGET_SUBJECTS else ""
                print(f"load      {name:<10} {'(no validation)' if not validate else '':<15} "
                      f"{result['rows']:>9,} rows {result['seconds']:7.2f} s {rate:>10,.0f} rows/s"
                      f" (CPU {result['cpu_seconds']:.1f} s)"
                      f"  x{rate / base_rate:.4f} baseline  peak RSS {result['peak_tree_mb']:.0f} MB with workers"
                      f" ({result['peak_rss_mb']:.0f} MB loading process)"
                      f"  workers {'one per CPU' if workers is None else workers}"
                      f"  rejects {result['rejects']}  reconciled {result['reconciled']}  {target}".rstrip())
                out.append((name, result))
        finally:
            if "postgresql" in stores:
                asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    return out


if __name__ == "__main__":
    main()
