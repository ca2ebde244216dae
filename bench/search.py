"""Search latency and throughput (issue 4, "Speed").

N stored Specimens (default 100k) with their subjects (Patients), consents, enrolments
(ResearchSubjects) and studies, written straight through the store's `put_many` (so the
search index is built the way every write builds it). Single-page queries of five kinds —
token+token, date range, chained, `_include`, chained + `_include` — each alone and all mixed:

1. in-process, per search: microseconds through the ASGI app, split into database and Python, and the
   statements it ran (each a round trip on PostgreSQL);
2. one uvicorn worker, wrk at concurrency 1 (service time) and 16 (at c=16 on one worker, p50 is
   about 16 / throughput), beside a bare ASGI app returning the very same bytes (the ceiling);
   with `--workers N`, the mixed queries at c=16 against N workers too;
3. the EXPLAIN of every kind's page statement: the indexes it uses (`--explain`: the whole plan).

Target on PostgreSQL: p50 <= 10 ms, p99 <= 50 ms.

    .venv/bin/python bench/search.py [--specimens 100000] [--seconds 10] [--engines sqlite,postgresql]
                                     [--explain] [--in-process] [--workers 2]
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, arguments, bytes_app, forget_audit_trail, print_table, server, specimen, wrk_script
from bench.read import pg_database
from gateway.access.gate import Restriction
from gateway.app import create_app
from gateway.search.engine import SearchEngine
from gateway.served import STORED_TYPES
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.database import to_dollar

DATA = ROOT / "bench" / ".data"
SCT = "http://snomed.info/sct"
TYPES = ("119361006", "119297000", "258566005", "119364003")
STUDIES = 10
BATCH = 2000


def _specimen(n: int, patients: int) -> dict[str, Any]:
    """The read benchmark's ~1 kB specimen, with statuses and types varied so that criteria select."""
    body = specimen(n, patients)
    body["status"] = "unavailable" if n % 3 == 0 else "available"
    body["type"]["coding"][0]["code"] = TYPES[n % len(TYPES)]
    return body


def _subject_resources(k: int) -> list[dict[str, Any]]:
    """A participant: Patient, Consent and ResearchSubject (Patient ids match common.specimen's)."""
    pid = f"S{k:07d}"
    study = f"st{k % STUDIES}"
    return [
        {"resourceType": "Patient", "id": pid, "identifier": [{"system": "urn:mrn", "value": f"MRN{k:07d}"}],
         "gender": "female" if k % 2 else "male", "birthDate": f"{1940 + k % 60}-0{1 + k % 9}-1{k % 10}"},
        {"resourceType": "Consent", "id": f"c-{pid}", "status": "active" if k % 7 else "inactive",
         "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]},
         "category": [{"coding": [{"system": "http://loinc.org", "code": "57016-8"}]}],
         "patient": {"reference": f"Patient/{pid}"}, "dateTime": "2020-01-01"},
        {"resourceType": "ResearchSubject", "id": f"rs-{pid}", "status": "on-study",
         "study": {"reference": f"ResearchStudy/{study}"}, "individual": {"reference": f"Patient/{pid}"}},
    ]


def _studies() -> list[dict[str, Any]]:
    return [{"resourceType": "ResearchStudy", "id": f"st{i}", "status": "active", "title": f"Study {i}",
             "identifier": [{"system": "urn:study", "value": f"TRC-2024-{i:03d}"}]} for i in range(STUDIES)]


async def fill(url: str, n: int) -> None:
    """Store the data set unless it is there already (reused across runs), then VACUUM ANALYZE on PostgreSQL
    (ANALYZE on SQLite). The vacuum sets the visibility map, which index-only scans of the index tables need
    to skip the heap: a server with autovacuum gets there by itself after a load, one without it never does
    (every "Index Only Scan" then visits the heap anyway)."""
    store = await Store.open(url)
    try:
        await forget_audit_trail(store.db)
        row = await store.db.fetchone("SELECT COUNT(*) FROM resources WHERE type = 'Specimen'")
        if not row or row[0] < n:
            patients = max(1, n // 5)
            await store.put_many(_studies())
            for start in range(0, patients, BATCH // 3):
                await store.put_many([r for k in range(start, min(patients, start + BATCH // 3))
                                      for r in _subject_resources(k)])
                print(f"  stored {min(patients, start + BATCH // 3)} participants", end="\r", flush=True)
            print()
            for start in range(0, n, BATCH):
                await store.put_many([_specimen(i, patients) for i in range(start, min(n, start + BATCH))])
                print(f"  stored {min(n, start + BATCH)} specimens", end="\r", flush=True)
            print()
        await store.db.fetchall("VACUUM ANALYZE" if store.dialect == "postgresql" else "ANALYZE")
    finally:
        await store.close()


def queries(n: int, rng: random.Random, each: int = 200) -> dict[str, list[str]]:
    """Paths of single-page searches, `each` per kind, with random values that match."""
    patients = max(1, n // 5)

    def pick(fmt: str) -> list[str]:
        return [fmt.format(p=rng.randrange(patients), t=rng.choice(TYPES), y=2010 + rng.randrange(14),
                           s=rng.randrange(STUDIES), i=rng.randrange(n)) for _ in range(each)]

    return {
        "token+token": [p for pair in zip(
            pick(f"/fhir/Specimen?status=unavailable&type={SCT}|{{t}}"),
            pick("/fhir/Specimen?identifier=https://biobank.massgeneral.org/fhir/sid/specimen|BB-{i:07d}-02"
                 "&status=available,unavailable"), strict=True) for p in pair][:each],
        "date range": pick("/fhir/Specimen?collected=ge{y}-03-01&collected=lt{y}-04-01&genotyped=true"),
        "chained": pick("/fhir/Specimen?subject:Patient.identifier=urn:mrn|MRN{p:07d}"),
        "_include": pick("/fhir/Specimen?subject=Patient/S{p:07d}&_include=Specimen:subject"),
        "chained+_include": pick("/fhir/ResearchSubject?study.identifier=urn:study|TRC-2024-{s:03d}"
                                 "&_include=ResearchSubject:individual&_count=10"),
    }


_LUA = """
local paths = {{{paths}}}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
"""


async def forget_accesses(url: str) -> None:
    """The audit trail of earlier runs forgotten (`forget_audit_trail`), so that every wrk run starts with an empty
    audit queue: past a backlog of 50,000 queued accesses the gateway materialises AuditEvents while busy
    (gateway/access/audit.py), and the runs of this benchmark queue ~10,000 each, so without this the later runs
    (the mixed one last) would pay for the earlier ones' AuditEvents. That deferred cost is real, and measured as
    such by bench/read.py's sustained rate; here each run measures a burst of searches."""
    store = await Store.open(url)
    try:
        await forget_audit_trail(store.db, vacuum=False)
    finally:
        await store.close()


def wrk_paths(base: str, paths: list[str], seconds: int, connections: int = 16, url: str | None = None
              ) -> dict[str, float]:
    """wrk over a fixed list of paths (round robin): req/s and p50/p99 in ms; `url`: of the gateway's database,
    whose audit trail is forgotten first (`forget_accesses`)."""
    if url is not None:
        asyncio.run(forget_accesses(url))
    return wrk_script(base, _LUA.format(paths=", ".join(orjson.dumps(p).decode() for p in paths)), seconds,
                      connections)


def baseline_app():
    """The ceiling: a bare ASGI app answering each benchmark path with the gateway's own bytes."""
    answers: dict[str, bytes] = {k: v.encode() for k, v in orjson.loads(Path(os.environ["BENCH_ANSWERS"])
                                                                          .read_bytes()).items()}
    return bytes_app(lambda scope: answers.get(
        scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else ""), b"{}"))


def capture(base: str, paths: list[str]) -> dict[str, str]:
    """The gateway's answers, checked: 200, a searchset, at least one match."""
    out = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for path in paths:
            r = client.get(path)
            assert r.status_code == 200, (path, r.text[:300])
            assert any(e["search"]["mode"] == "match" for e in r.json()["entry"]), path
            out[path] = r.text
    return out


def _pg_indexes(plan: dict[str, Any]) -> list[str]:
    own = [f"{plan['Node Type']} {plan['Index Name']}"] if "Index Name" in plan else []
    return own + [name for child in plan.get("Plans", []) for name in _pg_indexes(child)]


_SQLITE_INDEX = re.compile(r"(?:SEARCH|SCAN) (\w+).*?(?:USING (?:COVERING )?INDEX (\w+)|USING (PRIMARY KEY))?(?: \(|$)")


def _literal(value: Any) -> str:
    """A parameter written as an SQL literal of unknown type (EXECUTE casts it to the prepared parameter's)."""
    if isinstance(value, list):
        return _literal("{" + ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
                                       for v in value) + "}")
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return "'" + text.replace("'", "''") + "'"


async def _pg_plan(store: Store, text: str, params: list[Any], generic: bool, full: bool) -> tuple[dict, list[str]]:
    """EXPLAIN ANALYZE of a page statement as the engine runs it: planned for its values on the main pool, or, when
    the engine runs it with a generic plan (engine.Planned), as a prepared statement on the point pool, executed
    twice so that the second run shows the cached plan (its planning time is that of fetching it)."""
    analyze = "EXPLAIN (ANALYZE, FORMAT JSON) "
    if not generic:
        plan = orjson.loads((await store.db.fetchall(analyze + text, params))[0][0])[0]
        rows = await store.db.fetchall("EXPLAIN (ANALYZE, COSTS OFF) " + text, params) if full else []
        return plan, [row[0] for row in rows]
    execute = f"EXECUTE bench_page({', '.join(_literal(p) for p in params)})"
    async with store.db.points.acquire() as conn:
        await conn.execute(f"PREPARE bench_page AS {to_dollar(text)}")
        try:
            for _ in range(2):
                plan = orjson.loads(await conn.fetchval(analyze + execute))[0]
            rows = await conn.fetch("EXPLAIN (ANALYZE, COSTS OFF) " + execute) if full else []
        finally:
            await conn.execute("DEALLOCATE bench_page")
    return plan, [row[0] for row in rows]


async def explain(url: str, examples: dict[str, str], full: bool) -> None:
    """The page statement of each kind, as the engine writes it (probes decided on the data), with the
    indexes the engine's plan uses — PostgreSQL: EXPLAIN ANALYZE, with planning and execution time, of the
    custom plan or, for a page the engine runs with a generic plan, of that."""
    store = await Store.open(url)
    engine = SearchEngine(store)
    everything = Restriction(frozenset(STORED_TYPES))
    print(f"\nEXPLAIN of each kind's page statement on {store.dialect}:")
    try:
        for kind, path in examples.items():
            parts = urlsplit(path)
            query = engine.parse(parts.path.rsplit("/", 1)[-1], parse_qsl(parts.query), strict=True)
            planned = await engine.page_statement([query], everything, query.count + 1)
            statement = planned.sql
            print(f"-- {kind}: {path}")
            if store.dialect == "postgresql":
                plan, lines = await _pg_plan(store, statement.text, statement.params, planned.generic, full)
                indexes = ", ".join(_pg_indexes(plan["Plan"])) or "none"
                print(f"   {'generic' if planned.generic else 'custom'} plan: planning {plan['Planning Time']:.2f} ms, "
                      f"execution {plan['Execution Time']:.2f} ms; indexes: {indexes}")
                if lines:
                    print("\n".join(f"      {line}" for line in lines))
            else:
                rows = await store.db.fetchall("EXPLAIN QUERY PLAN " + statement.text, statement.params)
                used = [" ".join(x for x in m.groups() if x) for row in rows if (m := _SQLITE_INDEX.search(row[-1]))]
                print(f"   indexes: {', '.join(used) or 'none'}")
                if full:
                    print("\n".join(f"      {row[-1]}" for row in rows))
    finally:
        await store.close()


_TICK = os.sysconf("SC_CLK_TCK")


def _backends(db: Any) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend of `db`'s pools, from /proc (PostgreSQL runs on this
    machine; no backend: SQLite, or /proc unreadable). asyncpg.Pool (transactions) has no public list of its
    connections."""
    if db.dialect != "postgresql":
        return {}
    pids = [*db.reads.pids(), *db.points.pids(),
            *(h._con.get_server_pid() for h in db.pool._holders if h._con is not None)]
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    return out


async def in_process(url: str, kinds: dict[str, list[str]], rounds: int = 3) -> None:
    """Per search inside this process (no HTTP server, no wrk): microseconds from the ASGI call to its last
    message (server side: the client's own cost is not counted), and of those the time awaiting the
    database driver — the rest is Python — and the statements run (each a round trip on PostgreSQL).
    Best of `rounds` per kind: the least noisy figure on a shared machine. Logging is at warning level
    (a search logs one line at info).

    Beside those wall-clock figures, the CPU a search costs, which other work on the machine does not inflate:
    this process's (gateway and the in-process client: `time.process_time`) and, on PostgreSQL, its
    backends' (/proc; clock ticks of 10 ms, so over 200 searches a resolution of 50 us)."""
    db_seconds, app_seconds, statements = [0.0], [0.0], [0.0]

    def timed(run: Callable[..., Awaitable[Any]], into: list[float], count: bool = False
              ) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return await run(*args)
            finally:
                into[0] += time.perf_counter() - started
                statements[0] += count
        return call

    app = create_app(Settings(database_url=url, base_url="http://127.0.0.1/fhir", auth_disabled=True,
                              data_dir=DATA / "gw-search-in-process", log_level="warning"))
    async with app.router.lifespan_context(app):
        db = app.state.services.store.db
        for method in ("fetchall", "fetchone", "fetch_point", "fetch_points"):
            setattr(db, method, timed(getattr(db, method), db_seconds, count=True))
        best: dict[str, tuple[float, float, float]] = {}
        cpu: dict[str, tuple[float, float]] = {}
        transport = httpx.ASGITransport(app=timed(app, app_seconds))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            for paths in kinds.values():  # warm: connections, statement caches, planner statistics
                for path in paths[:20]:
                    assert (await client.get(path)).status_code == 200, path
            for _ in range(rounds):
                for kind, paths in kinds.items():
                    db_seconds[0] = app_seconds[0] = statements[0] = 0.0
                    backends, process = _backends(db), time.process_time()
                    for path in paths:
                        await client.get(path, headers={"accept-encoding": "identity"})
                    own = (time.process_time() - process) / len(paths) * 1e6
                    theirs = sum(t - backends.get(pid, 0.0) for pid, t in _backends(db).items()) / len(paths) * 1e6
                    total, in_db = app_seconds[0] / len(paths) * 1e6, db_seconds[0] / len(paths) * 1e6
                    if kind not in best or total < best[kind][0]:
                        best[kind] = (total, in_db, statements[0] / len(paths))
                    cpu[kind] = min(cpu.get(kind, (own, theirs)), (own, theirs), key=sum)
    print(f"\nper search in-process on {db.dialect}, best of {rounds} x {len(next(iter(kinds.values())))}:")
    print(f"{'kind':<20} {'total us':>9} {'database us':>12} {'python us':>10} {'statements':>11} "
          f"{'process cpu us':>15} {'postgres cpu us':>16}")
    for kind, (total, in_db, count) in best.items():
        print(f"{kind:<20} {total:>9.0f} {in_db:>12.0f} {total - in_db:>10.0f} {count:>11.2f} "
              f"{cpu[kind][0]:>15.0f} {cpu[kind][1]:>16.0f}")


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--explain", action="store_true", help="print the full plans too, not only their indexes")
    parser.add_argument("--in-process", action="store_true",
                        help="only the in-process per-search figures (no servers, no wrk)")
    parser.add_argument("--workers", type=int, default=1,
                        help="also run the mixed queries at c=16 against this many uvicorn workers (one per core)")
    args = parser.parse_args()
    if shutil.which("wrk") is None and not args.in_process:
        raise SystemExit("wrk is needed for this benchmark: apt-get install wrk")
    DATA.mkdir(parents=True, exist_ok=True)
    urls = {}
    if "sqlite" in args.engines:
        urls["sqlite"] = f"sqlite:///{DATA / f'search-{args.specimens}.db'}"
    if "postgresql" in args.engines:
        urls["postgresql"] = asyncio.run(pg_database(f"bench_search_{args.specimens}"))
    kinds = queries(args.specimens, random.Random(4))
    mixed = [p for paths in zip(*kinds.values(), strict=True) for p in paths]
    for engine, url in urls.items():
        print(f"preparing {engine} ...")
        asyncio.run(fill(url, args.specimens))
        asyncio.run(in_process(url, kinds))
        if not args.in_process:
            run_servers(engine, url, kinds, mixed, args.seconds, args.workers)
        asyncio.run(explain(url, {kind: paths[0] for kind, paths in kinds.items()}, args.explain))


def run_servers(engine: str, url: str, kinds: dict[str, list[str]], mixed: list[str], seconds: int,
                workers: int = 1) -> None:
    """wrk at concurrency 1 (service time) and 16 against one gateway worker, the mixed queries at c=16 against
    `workers` workers if more than one (the worker and the database share the cores), then the bare ASGI
    ceiling."""
    env = {"GATEWAY_DATABASE_URL": url, "GATEWAY_DATA_DIR": str(DATA / f"gw-search-{engine}"),
           "GATEWAY_BASE_URL": "http://127.0.0.1/fhir", "GATEWAY_AUTH_DISABLED": "1"}
    rows = []
    with server("gateway.asgi:app", env) as base:
        answers = capture(base, mixed)
        for kind, paths in [*kinds.items(), ("mixed", mixed)]:
            for connections in (1, 16):
                rows.append((f"gateway, {kind}, c={connections}", wrk_paths(base, paths, seconds, connections, url)))
    if workers > 1:
        with server("gateway.asgi:app", env, workers=workers) as base:
            wrk_paths(base, mixed, 2)  # every worker warmed up
            rows.append((f"gateway, mixed, c=16, {workers} workers", wrk_paths(base, mixed, seconds, url=url)))
    answers_file = DATA / f"search-answers-{engine}.json"
    answers_file.write_bytes(orjson.dumps(answers))
    with server("bench.search:baseline_app", {"BENCH_ANSWERS": str(answers_file)}, health="/", factory=True) as base:
        rows.insert(0, ("bare ASGI, same bytes, mixed, c=16", wrk_paths(base, mixed, seconds)))
    print_table(f"search on {engine}, 1 worker, wrk, {seconds}s each", rows, "bare ASGI, same bytes, mixed, c=16")


if __name__ == "__main__":
    main()
