"""What the egress gate adds to search latency (issue 8: "The egress gate adds <= 20% to search latency").

The search benchmark's data set and queries (`bench/search.py`: `fill`, `queries`; a database
of its own, because here every subject's consent permits research use and external sharing,
4 in 5 also genetic research, so every principal below gets the very same entries). The
gateway app is served in-process (httpx.ASGITransport, one request at a time, no sockets:
less noise than wrk on a shared machine) to
(a) an internal principal with `system/*.rs`: the gate checks scopes and lets the stored
    bytes out untouched — the baseline;
(b) an external collaborator with `system/*.rs`: the consent condition in the SQL, each entry
    checked again and pseudonymised (a JSON round trip);
(c) the same collaborator with per-collaborator pseudonyms on (GATEWAY_COLLABORATOR_PSEUDONYMS):
    its subject ids translated on the way in, every subject code replaced by its HMAC on the
    way out; the pseudonyms of the queried subjects are recorded beforehand, as if disclosed earlier.
Token verification is replaced by the fixed principal in all three. The three run in
interleaved rounds, so load from elsewhere on the machine falls on them alike. Prints req/s,
p50 and p99 of each and what (b) and (c) add to (a): to each percentile, to the time per request,
and "paired": the median ratio of chunks of the same paths run back to back (`Runner.paired`), the
figure least moved by load from elsewhere. Last, the steadiest figure of the gate itself: CPU time
per `Gate.disclose_many` call (and per entry) of each principal over the pages its warm-up pass
served (`Pages`, best of 5 passes: the egress work alone, without SQL or HTTP).

    .venv/bin/python bench/gate.py [--specimens 100000] [--seconds 10] [--engines sqlite,postgresql]
"""

from __future__ import annotations

import asyncio
import random
import re
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import arguments, print_table
from bench.read import pg_database
from bench.search import DATA, fill, queries
from gateway.access.consent import PERMISSION_SYSTEM
from gateway.access.gate import Gate
from gateway.access.principal import Principal
from gateway.access.scopes import Scopes
from gateway.app import create_app
from gateway.runtime import open_store
from gateway.settings import Settings
from gateway.store import StoredResource

CHUNK = 25
"""Requests a principal runs before the next one takes its turn."""
SUBJECT = re.compile(r"Patient/(S\d{7})")


def _consent(k: int) -> dict[str, Any]:
    """Subject k's BiobankConsent: research and external sharing, genetic research for 4 in 5."""
    permits = ("research", "external-sharing", *(("genetic",) if k % 5 else ()))
    return {"resourceType": "Consent", "id": f"c-S{k:07d}", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "57016-8"}]}],
            "patient": {"reference": f"Patient/S{k:07d}"}, "dateTime": "2020-01-01",
            "provision": {"type": "permit", "provision": [
                {"type": "permit", "purpose": [{"system": PERMISSION_SYSTEM, "code": p}]} for p in permits]}}


async def consent_all(url: str, n: int) -> None:
    """Give every subject of the data set its sharing consent, unless that was done in an earlier run."""
    patients = max(1, n // 5)
    store = await open_store(Settings(database_url=url))
    try:
        row = await store.db.fetchone("SELECT COUNT(*) FROM consent_state WHERE external_sharing = ?", (True,))
        if row and row[0] >= patients:
            return
        for start in range(0, patients, 2000):
            await store.put_many(_consent(k) for k in range(start, min(patients, start + 2000)))
            print(f"  consented {min(patients, start + 2000)} subjects", end="\r", flush=True)
        print()
    finally:
        await store.close()


@dataclass
class Runner:
    """One principal on one app: the paths it asks (with their kinds) and the latencies it got."""

    name: str
    client: httpx.AsyncClient
    paths: list[tuple[str, str]]
    latencies: list[tuple[str, float]] = field(default_factory=list)

    async def run(self, start: int, stop: int) -> None:
        for kind, path in self.paths[start:stop]:
            started = time.perf_counter()
            r = await self.client.get(path)
            elapsed = time.perf_counter() - started
            assert r.status_code == 200, (self.name, path, r.text[:300])
            self.latencies.append((kind, elapsed))

    @property
    def spent(self) -> float:
        return sum(seconds for _, seconds in self.latencies)

    def figures(self, kind: str | None = None) -> dict[str, float]:
        ms = sorted(s * 1000 for k, s in self.latencies if kind in (None, k))
        return {"rps": 1000 * len(ms) / sum(ms), "p50": statistics.median(ms), "p99": ms[int(len(ms) * 0.99) - 1]}

    def paired(self, base: Runner, kind: str | None = None) -> float:
        """What this runner adds to `base`, in %, compared chunk by chunk: the median over the chunks of the
        ratio of their times (the same paths, run back to back). Load from elsewhere that comes and goes
        over seconds shifts whole percentiles between runners; within a chunk pair it falls on both alike."""
        ratios = []
        for start in range(0, min(len(self.latencies), len(base.latencies)), CHUNK):
            mine, theirs = (sum(s for k, s in r.latencies[start:start + CHUNK] if kind in (None, k))
                            for r in (self, base))
            if theirs:
                ratios.append(mine / theirs)
        return 100 * (statistics.median(ratios) - 1)


@dataclass
class Pages:
    """What a gate was given to disclose (the pages and includes of searches, as read from the store), to
    time `disclose_many` again on them alone."""

    gate: Gate
    principal: Principal
    pages: list[list[StoredResource]] = field(default_factory=list)

    @classmethod
    def kept(cls, client: httpx.AsyncClient, principal: Principal) -> Pages:
        """Keep what the gate of `client`'s app discloses from now on."""
        gate: Gate = client.app.state.services.gate  # type: ignore[attr-defined]
        pages = cls(gate, principal)
        disclose_many = gate.disclose_many

        async def keeping(who: Principal, items: Sequence[StoredResource]) -> list[bytes | None]:
            pages.pages.append(list(items))
            return await disclose_many(who, items)

        gate.disclose_many = keeping  # type: ignore[method-assign]
        return pages

    def stop(self) -> None:
        """Keep nothing more: the gate's own `disclose_many` again."""
        del self.gate.disclose_many

    async def timed(self, passes: int = 5) -> tuple[float, float]:
        """µs of CPU per call and per entry, best of `passes` passes over every page kept."""
        best = float("inf")
        for _ in range(passes):
            started = time.process_time()
            for page in self.pages:
                await self.gate.disclose_many(self.principal, page)
            best = min(best, time.process_time() - started)
        return 1e6 * best / len(self.pages), 1e6 * best / sum(map(len, self.pages))


@asynccontextmanager
async def served(settings: Settings, principal: Principal) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app, in-process, every request authenticated as `principal`."""
    app = create_app(settings)

    async def authenticate(_request: object) -> Principal:
        return principal

    async with app.router.lifespan_context(app):
        app.state.services.authenticate = authenticate
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def entry_types(client: httpx.AsyncClient, path: str) -> list[str]:
    """The resource types of a searchset's entries, in order (what "the same entries" is checked by)."""
    r = await client.get(path)
    assert r.status_code == 200, (path, r.text[:300])
    return [e["resource"]["resourceType"] for e in r.json().get("entry", [])]


async def in_pseudonyms(client: httpx.AsyncClient, principal: Principal, paths: list[str]) -> list[str]:
    """`paths` as the collaborator writes them with pseudonyms on, those pseudonyms recorded as disclosed."""
    pseudonyms = client.app.state.services.gate.pseudonyms  # type: ignore[attr-defined]
    named = {code: pseudonyms.of(principal.client_id, code) for path in paths for code in SUBJECT.findall(path)}
    await pseudonyms.record(principal.client_id, named)
    return [SUBJECT.sub(lambda m: f"Patient/{named[m.group(1)]}", path) for path in paths]


async def measure(runners: list[Runner], seconds: float, pages: list[Pages]) -> None:
    """Warm every runner up (one pass, keeping what each gate discloses in `pages`), then interleave chunks
    until each has spent `seconds`."""
    for runner, kept in zip(runners, pages, strict=True):
        kept.pages.clear()
        await runner.run(0, len(runner.paths))
        runner.latencies.clear()
        kept.stop()
    position = 0
    while min(r.spent for r in runners) < seconds:
        for runner in runners:
            await runner.run(position, position + CHUNK)
        position = (position + CHUNK) % len(runners[0].paths)


def added(figures: dict[str, float], base: dict[str, float]) -> str:
    return (f"{100 * (figures['p50'] / base['p50'] - 1):+6.1f}% p50 {100 * (figures['p99'] / base['p99'] - 1):+6.1f}% "
            f"p99 {100 * (base['rps'] / figures['rps'] - 1):+6.1f}% time per request")


async def bench(url: str, engine: str, n: int, seconds: float) -> None:
    kinds = queries(n, random.Random(4))
    mixed = [(kind, path) for paths in zip(*kinds.values(), strict=True)
             for kind, path in zip(kinds, paths, strict=True)]
    settings = Settings(database_url=url, data_dir=DATA / f"gw-gate-{engine}", base_url="http://bench/fhir",
                        auth_disabled=True, log_level="warning")
    pseudonymous = settings.model_copy(update={"collaborator_pseudonyms": True, "pseudonym_secret": SecretStr(
        "bench-secret-bench-secret-bench-secret")})
    internal = Principal("bench-internal", "internal", Scopes.parse("system/*.rs"))
    external = Principal("bench-collaborator", "external", Scopes.parse("system/*.rs"))
    async with (served(settings, internal) as a, served(settings, external) as b,
                served(pseudonymous, external) as c):
        spoken = list(zip([k for k, _ in mixed], await in_pseudonyms(c, external, [p for _, p in mixed]), strict=True))
        for (_, plain), (_, written) in list(zip(mixed, spoken, strict=True))[:50]:
            types = await entry_types(a, plain)
            assert types == await entry_types(b, plain) == await entry_types(c, written), f"different entries: {plain}"
        runners = [Runner("(a) internal, scopes only", a, mixed),
                   Runner("(b) external: consent, pseudonymised", b, mixed),
                   Runner("(c) external, own pseudonyms", c, spoken)]
        pages = [Pages.kept(a, internal), Pages.kept(b, external), Pages.kept(c, external)]
        await measure(runners, seconds, pages)
        gated = [await kept.timed() for kept in pages]
    rows = [(r.name, r.figures()) for r in runners]
    print_table(f"search through the gate on {engine}, {n} specimens, in-process (ASGITransport), sequential, "
                f"{len(runners[0].latencies)} requests each", rows, runners[0].name)
    for runner in runners[1:]:
        print(f"{runner.name:<44} adds {added(runner.figures(), rows[0][1])} {runner.paired(runners[0]):+6.1f}% paired")
        for kind in kinds:
            print(f"    {kind:<40} adds {added(runner.figures(kind), runners[0].figures(kind))} "
                  f"{runner.paired(runners[0], kind):+6.1f}% paired")
    for runner, (call, entry) in zip(runners, gated, strict=True):
        print(f"{runner.name:<44} Gate.disclose_many: {call:7.1f} us per call, {entry:5.2f} us per entry (CPU)")


def main() -> None:
    args = arguments(__doc__).parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    for engine in args.engines.split(","):
        url = (f"sqlite:///{DATA / f'gate-{args.specimens}.db'}" if engine == "sqlite"
               else asyncio.run(pg_database(f"bench_gate_{args.specimens}")))
        print(f"preparing {engine} ...")
        asyncio.run(fill(url, args.specimens))
        asyncio.run(consent_all(url, args.specimens))
        asyncio.run(bench(url, engine, args.specimens, args.seconds))


if __name__ == "__main__":
    main()
