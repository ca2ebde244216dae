"""The official Python clients, unmodified, against a real server process (uvicorn via
`biobank-gateway serve` on 127.0.0.1): search, follow pages, include — on both engines."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fhirclient import client as smart_client
from fhirclient.models.patient import Patient
from fhirclient.models.specimen import Specimen
from fhirpy import SyncFHIRClient

from gateway.store import Store

from ..conftest import PgDatabases, free_port, wait_http
from .corpus import ALL

SERVE = str(Path(sys.executable).with_name("biobank-gateway"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def server(request: pytest.FixtureRequest, pg_databases: PgDatabases) -> AsyncIterator[str]:
    """The FHIR base of a gateway process serving the corpus."""
    tmp = Path(tempfile.mkdtemp(prefix="gw-clients-"))
    url = f"sqlite:///{tmp}/gateway.db" if request.param == "sqlite" else await pg_databases.create()
    store = await Store.open(url)
    await store.put_many(ALL)
    await store.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    env = {**os.environ, "GATEWAY_DATABASE_URL": url, "GATEWAY_AUTH_DISABLED": "1", "GATEWAY_BASE_URL": base,
           "GATEWAY_DATA_DIR": str(tmp / "data")}
    process = subprocess.Popen([SERVE, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=tmp)
    try:
        await wait_http(f"{base}/metadata")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_fhirclient_searches_pages_and_includes(server: str) -> None:
    def run() -> None:
        smart = smart_client.FHIRClient(settings={"app_id": "search-test", "api_base": server})
        found = Specimen.where(struct={"status": "available", "_count": "2", "_sort": "_id"})
        pages = list(found.perform_iter(smart.server))
        assert len(pages) == 2 and pages[0].total is None
        assert [s.id for p in pages for s in (e.resource for e in p.entry)] == ["s1", "s2", "s4"]
        search = Specimen.where(struct={"_id": "s2"}).include("subject")
        bundle = next(search.perform_iter(smart.server))
        modes = sorted((e.search.mode, e.resource.resource_type, e.resource.id) for e in bundle.entry)
        assert modes == [("include", "Patient", "p1"), ("match", "Specimen", "s2")]
        patients = list(Patient.where(struct={"name": "muller"}).perform_resources_iter(smart.server))
        assert [p.id for p in patients] == ["p1"]
    await asyncio.to_thread(run)


async def test_fhirpy_searches_pages_counts_and_includes(server: str) -> None:
    def run() -> None:
        fhir = SyncFHIRClient(server)
        specimens = fhir.resources("Specimen").search(status="available").sort("_id").limit(2)
        assert [s.id for s in specimens.fetch_all()] == ["s1", "s2", "s4"]
        assert fhir.resources("Specimen").search(status="available").count() == 3
        raw = fhir.resources("Specimen").search(_id="s2").include("Specimen", "subject").fetch_raw()
        assert sorted(e.resource.id for e in raw.entry) == ["p1", "s2"]
        subjects = fhir.resources("ResearchSubject").search(**{"study.identifier": "urn:study|TRC-2024-017"})
        assert sorted(s.id for s in subjects.fetch_all()) == ["rs1", "rs2"]
        patients = fhir.resources("Patient").has("Consent", "patient", status="active").fetch_all()
        assert sorted(p.id for p in patients) == ["p1", "p3"]
        with_subjects = fhir.resources("Patient").search(_id="p1").revinclude("ResearchSubject", "individual")
        assert sorted(e.resource.id for e in with_subjects.fetch_raw().entry) == ["p1", "rs1"]
    await asyncio.to_thread(run)
