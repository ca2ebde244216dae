"""Shared pieces of the benchmarks: servers on free ports, wrk runs, realistic specimens.

Benchmarks are run by hand (`python bench/<name>.py`), never by `make test`. Each one
prints its figures beside a baseline measured in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
B = "https://biobank.massgeneral.org/fhir"


_TICK = os.sysconf("SC_CLK_TCK")


def _stats() -> list[list[str]]:
    """Every process's /proc/<pid>/stat fields after the command name (pid first)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                head, _, tail = (entry / "stat").read_text().rpartition(")")
            except OSError:
                continue
            out.append([entry.name, head.partition("(")[2], *tail.split()])
    return out


def cpu_seconds(root: int | None) -> tuple[float, float]:
    """CPU seconds used so far (user + system) by process `root` with its descendants (a server and its
    workers), and by every PostgreSQL process of the machine (its backends and background processes; the
    benchmark is the only client while it runs). Read from /proc, in clock ticks of 10 ms."""
    stats = _stats()
    children: dict[int, list[int]] = {}
    for fields in stats:
        children.setdefault(int(fields[3]), []).append(int(fields[0]))
    tree, todo = set(), [root] if root else []
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += children.get(pid, [])
    server = sum(int(f[13]) + int(f[14]) for f in stats if int(f[0]) in tree) / _TICK
    postgres = sum(int(f[13]) + int(f[14]) for f in stats if f[1] == "postgres") / _TICK
    return server, postgres


class Base(str):
    """A server's base URL that also carries the server's process id (for `cpu_seconds`)."""

    pid: int | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@contextmanager
def server(target: str, env: dict[str, str], health: str = "/healthz", factory: bool = False,
           workers: int = 1) -> Iterator[str]:
    """`uvicorn target` (one worker unless said) on a free port; yields the base URL."""
    port = free_port()
    args = [str(VENV_BIN / "python"), "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log", "--workers", str(workers)]
    if factory:
        args.append("--factory")
    log = open(tempfile.mkstemp(prefix="bench-server-", suffix=".log")[1], "wb")  # noqa: SIM115
    proc = subprocess.Popen(args, env={**os.environ, **env}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}{health}")
        base = Base(f"http://127.0.0.1:{port}")
        base.pid = proc.pid
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([str(VENV_BIN / "biobank-gateway"), *args], env={**os.environ, **env}, cwd=ROOT,
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


_WRK_LUA = """
math.randomseed(12345)
local n = {n}
local prefix = "{prefix}"
local auth = "{auth}"
request = function()
  local headers = {{}}
  if auth ~= "" then headers["Authorization"] = auth end
  return wrk.format("GET", prefix .. math.random(0, n - 1), headers)
end
"""


def wrk(url_prefix: str, n: int, auth: str = "", seconds: int = 10, connections: int = 16) -> dict[str, float]:
    """req/s and latency percentiles (ms) of random GETs of `url_prefix<0..n-1>` at `connections`."""
    base, _, path = url_prefix.partition("//")[2].partition("/")
    return wrk_script(f"http://{base}", _WRK_LUA.format(n=n, prefix="/" + path, auth=auth), seconds, connections)


def wrk_script(base: str, lua: str, seconds: int = 10, connections: int = 16) -> dict[str, float]:
    """Run wrk with a Lua script against `base`: req/s, p50/p99 latency (ms) and non-2xx count; for a server
    started by `server`, also the CPU microseconds per request of the server's processes and of PostgreSQL
    (where the cores go: on a machine whose cores the server, the database and wrk share, throughput is
    their sum)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for this benchmark: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    threads = min(2, connections)  # wrk needs a connection per thread (c=1 measures service time)
    pid = base.pid if isinstance(base, Base) else None
    before = cpu_seconds(pid)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name,
                          base],
                         check=True, capture_output=True, text=True).stdout
    os.unlink(script.name)
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    if pid:
        requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        figures["server_us"], figures["postgres_us"] = (1e6 * (after - first) / requests
                                                        for after, first in zip(cpu_seconds(pid), before, strict=True))
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)  # type: ignore[union-attr]
        figures[f"p{pct}"] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non2xx"] = float(errors.group(1)) if errors else 0.0
    return figures


def specimen(n: int, subjects: int) -> dict[str, Any]:
    """A realistic ~1 kB BiobankSpecimen (aliquot of a whole-blood draw)."""
    subject = f"S{n % subjects:07d}"
    return {
        "resourceType": "Specimen", "id": f"bench-{n}",
        "meta": {"profile": [f"{B}/StructureDefinition/BiobankSpecimen"]},
        "extension": [
            {"url": f"{B}/StructureDefinition/source-status",
             "valueCoding": {"system": f"{B}/CodeSystem/specimen-status", "code": "AVAILABLE"}},
            {"url": f"{B}/StructureDefinition/genotyping",
             "extension": [{"url": "genotyped", "valueBoolean": n % 5 == 0}]},
        ],
        "identifier": [{"system": f"{B}/sid/specimen", "value": f"BB-{n:07d}-02"},
                       {"system": f"{B}/sid/container", "value": f"CT{n:09d}"}],
        "status": "available",
        "type": {"coding": [{"system": "http://snomed.info/sct", "code": "119361006", "display": "Plasma specimen"},
                            {"system": "http://terminology.hl7.org/CodeSystem/v2-0487", "code": "PLAS",
                             "display": "Plasma"}]},
        "subject": {"reference": f"Patient/{subject}"},
        "receivedTime": "2021-03-05T15:02:00-05:00",
        "collection": {"collectedDateTime": f"20{10 + n % 14:02d}-03-05T14:20:00-05:00",
                       "method": {"coding": [{"system": "http://snomed.info/sct", "code": "28520004",
                                              "display": "Venipuncture"}]},
                       "bodySite": {"text": "left arm"}},
        "processing": [{"extension": [{
            "url": "https://fhir.bbmri-eric.eu/fhir/StructureDefinition/miabis-sample-storage-temperature-extension",
            "valueCodeableConcept": {"coding": [{"system": "https://fhir.bbmri-eric.eu/fhir/CodeSystem/"
                                                           "miabis-storage-temperature-cs", "code": "-60to-85"}]}}]}],
        "container": [{"type": {"text": "2D barcoded cryovial 1.0 mL"},
                       "specimenQuantity": {"value": 0.5, "unit": "mL", "system": "http://unitsofmeasure.org",
                                            "code": "mL"}}],
    }


async def forget_audit_trail(db: Any, vacuum: bool = True) -> None:
    """Drop the AuditEvents and queued accesses of earlier runs from a reused fixture: each run then
    starts from the same state (an old backlog would be worked off during the run, and every run's
    AuditEvents would grow the tables the next run reads). `vacuum=False` while a gateway has the database
    open: a VACUUM of SQLite in WAL mode writes the whole file to the WAL, and the gateway's next commits
    then checkpoint it (~1 s stalls of its event loop)."""
    from gateway.store.schema import metadata

    deleted = 0
    async with db.transaction() as tx:
        for table in metadata.sorted_tables:
            if "type" in table.c and table.name != "audit_queue":
                deleted += await tx.execute(f"DELETE FROM {table.name} WHERE type = 'AuditEvent'")
        deleted += await tx.execute("DELETE FROM audit_queue")
    if deleted and vacuum:  # give the space back: reads of a file grown by old trails would measure the page cache
        await db.fetchall("VACUUM" if db.dialect == "sqlite" else "VACUUM ANALYZE")


def print_table(title: str, rows: list[tuple[str, dict[str, float]]], baseline: str) -> None:
    base = dict(rows)[baseline]["rps"]
    print(f"\n{title}")
    print(f"{'server':<44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x ' + baseline[:18]:>22} "
          f"{'server cpu us/req':>18} {'postgres cpu us/req':>20}")
    for name, f in rows:
        cpu = (f"{f['server_us']:>18.0f} {f['postgres_us']:>20.0f}" if "server_us" in f else "")
        print(f"{name:<44} {f['rps']:>9.0f} {f['p50']:>8.2f} {f['p99']:>8.2f} {f['rps'] / base:>22.2f} {cpu}"
              + (f"  ({f['non2xx']:.0f} non-2xx!)" if f.get("non2xx") else ""))


def arguments(doc: str | None) -> argparse.ArgumentParser:
    """The options the HTTP benchmarks share: data size, seconds per run, engines."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--specimens", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--engines", default="sqlite,postgresql")
    return parser


def bytes_app(answer: Any) -> Any:
    """A bare ASGI app (the ceiling in the benchmarks): `answer(scope)` gives the body bytes."""
    headers = [(b"content-type", b"application/fhir+json; charset=utf-8")]

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = answer(scope)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app
