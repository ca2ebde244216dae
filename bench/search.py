"""Search latency and throughput (issue 4, "Speed").

N stored Specimens (default 100k) with their subjects (Patients), consents, enrolments
(ResearchSubjects) and studies, written straight through the store's `put_many` (so the
search index is built the way every write builds it). One uvicorn worker per engine, wrk at
concurrency 16, single-page queries of five kinds — token+token, date range, chained,
`_include`, chained + `_include` — each alone and all mixed; beside them, in the same run,
a bare ASGI app returning the very same response bytes (the ceiling). Then the EXPLAIN of
every kind's page query, to show the indexes at work.
Target on PostgreSQL: p50 <= 10 ms, p99 <= 50 ms.

    .venv/bin/python bench/search.py [--specimens 100000] [--seconds 10] [--engines sqlite,postgresql]
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, arguments, bytes_app, print_table, server, specimen, wrk_script
from bench.read import pg_database
from gateway.access.gate import Restriction
from gateway.search.engine import SearchEngine
from gateway.served import STORED_TYPES
from gateway.store import Store

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
    """Store the data set unless it is there already (reused across runs), then ANALYZE."""
    store = await Store.open(url)
    try:
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
        await store.db.fetchall("ANALYZE")
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


def wrk_paths(base: str, paths: list[str], seconds: int, connections: int = 16) -> dict[str, float]:
    """wrk over a fixed list of paths (round robin): req/s and p50/p99 in ms."""
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


async def explain(url: str, examples: dict[str, str]) -> None:
    """EXPLAIN (PostgreSQL: ANALYZE) of each kind's page query, as the engine compiles it."""
    store = await Store.open(url)
    engine = SearchEngine(store)
    everything = Restriction(frozenset(STORED_TYPES))
    try:
        for kind, path in examples.items():
            parts = urlsplit(path)
            query = engine.parse(parts.path.rsplit("/", 1)[-1], parse_qsl(parts.query), strict=True)
            statement = engine.statement(query, everything, await engine.probed(query, everything))
            params = [*statement.params, query.count + 1]
            prefix = "EXPLAIN (ANALYZE, COSTS OFF) " if store.dialect == "postgresql" else "EXPLAIN QUERY PLAN "
            rows = await store.db.fetchall(prefix + statement.text, params)
            print(f"\n-- {kind}: {path}")
            for row in rows:
                print("   ", row[0] if store.dialect == "postgresql" else f"{'  ' * (row[1] > 0)}{row[-1]}")
    finally:
        await store.close()


def main() -> None:
    args = arguments(__doc__).parse_args()
    if shutil.which("wrk") is None:
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
        env = {"GATEWAY_DATABASE_URL": url, "GATEWAY_DATA_DIR": str(DATA / f"gw-search-{engine}"),
               "GATEWAY_BASE_URL": "http://127.0.0.1/fhir", "GATEWAY_AUTH_DISABLED": "1"}
        rows = []
        with server("gateway.asgi:app", env) as base:
            answers = capture(base, mixed)
            for kind, paths in kinds.items():
                rows.append((f"gateway, {kind}", wrk_paths(base, paths, args.seconds)))
            rows.append(("gateway, mixed", wrk_paths(base, mixed, args.seconds)))
        answers_file = DATA / f"search-answers-{engine}.json"
        answers_file.write_bytes(orjson.dumps(answers))
        with server("bench.search:baseline_app", {"BENCH_ANSWERS": str(answers_file)}, health="/",
                    factory=True) as base:
            rows.insert(0, ("bare ASGI, same bytes, mixed", wrk_paths(base, mixed, args.seconds)))
        print_table(f"search on {engine}, {args.specimens} specimens, 1 worker, wrk c=16, {args.seconds}s each",
                    rows, "bare ASGI, same bytes, mixed")
        asyncio.run(explain(url, {kind: paths[0] for kind, paths in kinds.items()}))


if __name__ == "__main__":
    main()
