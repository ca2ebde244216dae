"""Per-collaborator pseudonyms on the paths that are not plain REST: bulk export files
(both engines) and EHR-proxied answers (the fake EHR of tests/ehr). Whatever a collaborator
receives there names subjects by its pseudonyms, and it can use them back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from starlette.requests import Request

from gateway.access.principal import Principal
from gateway.app import create_app
from tests.access.corpus import resources
from tests.access.test_consent import EXTERNAL_VISIBLE
from tests.access.test_pseudonyms import CODE, SECRET
from tests.bulk.conftest import Bulk, principal
from tests.conftest import make_settings
from tests.ehr.conftest import CLIENT_ID, EHR, EXTERNAL, FakeEhr, GatewayKey, seed_biobank


@pytest.fixture
async def bulk(database_url: str, tmp_path: Path) -> AsyncIterator[Bulk]:
    """tests/bulk's client of an in-process gateway with the corpus, pseudonyms on, as a collaborator."""
    settings = make_settings(database_url, tmp_path, collaborator_pseudonyms=True, pseudonym_secret=SECRET)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                   base_url="http://testserver") as http:
        client = Bulk(http, app, principal("external", client="collab-a"))

        async def authenticate(_request: Request) -> Principal:
            return client.who

        app.state.services.authenticate = authenticate
        await app.state.services.store.put_many(resources())
        yield client


async def test_export_files_name_subjects_by_the_collaborators_pseudonyms(bulk: Bulk) -> None:
    lines = await bulk.lines(await bulk.export())
    blob = b"\n".join(line for group in lines.values() for line in group)
    assert CODE.findall(blob) == []
    patients = {orjson.loads(line)["id"] for line in lines["Patient"]}
    subjects = {orjson.loads(line)["subject"]["reference"][8:] for line in lines["Specimen"]}
    assert subjects == patients and len(patients) == len(EXTERNAL_VISIBLE)
    one = sorted(patients)[0]
    read = await bulk.http.get(f"/fhir/Patient/{one}", headers={"Authorization": "Bearer t"})
    assert read.status_code == 200 and read.json()["id"] == one  # resolvable once exported
    again = await bulk.lines(await bulk.export(params={"_type": "Patient"}))
    assert {orjson.loads(line)["id"] for line in again["Patient"]} == patients  # stable
    bulk.who = principal("external", client="collab-b")
    theirs = await bulk.lines(await bulk.export(params={"_type": "Patient"}))
    assert not {orjson.loads(line)["id"] for line in theirs["Patient"]} & patients


async def test_patient_export_takes_the_collaborators_pseudonyms(bulk: Bulk) -> None:
    everyone = await bulk.lines(await bulk.export(params={"_type": "Patient"}))
    one = orjson.loads(everyone["Patient"][0])["id"]
    mine = await bulk.lines(await bulk.export("/fhir/Patient/$export", params={"patient": f"Patient/{one}"}))
    assert [orjson.loads(line)["id"] for line in mine["Patient"]] == [one]
    assert {orjson.loads(line)["subject"]["reference"] for line in mine["Specimen"]} == {f"Patient/{one}"}
    by_code = await bulk.lines(await bulk.export("/fhir/Patient/$export", params={"patient": "Patient/S01"}))
    assert by_code.get("Patient", []) == []


@pytest.fixture
async def proxy(tmp_path: Path, fake_ehr: FakeEhr, gateway_key: GatewayKey) -> AsyncIterator[httpx.AsyncClient]:
    """tests/ehr's gateway proxying the fake EHR, pseudonyms on, every request a collaborator's."""
    settings = make_settings(f"sqlite:///{tmp_path}/gateway.db", tmp_path, ehr_base_url=EHR, ehr_timeout=2.0,
                             ehr_client_id=CLIENT_ID, ehr_private_key=gateway_key.pem,
                             collaborator_pseudonyms=True, pseudonym_secret=SECRET)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await seed_biobank(app.state.services.store)

        async def authenticate(_: Request) -> Principal:
            return EXTERNAL

        app.state.services.authenticate = authenticate
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            yield client


async def test_ehr_answers_name_the_donor_by_the_collaborators_pseudonym(proxy: httpx.AsyncClient) -> None:
    donor = (await proxy.get("/fhir/Specimen/SPS1")).json()["subject"]["reference"]
    assert donor != "Patient/S1"
    conditions = await proxy.get("/fhir/Condition", params={"patient": donor})
    entries = conditions.json()["entry"]
    assert entries and {e["resource"]["subject"]["reference"] for e in entries} == {donor}
    read = await proxy.get(f"/fhir/Condition/{entries[0]['resource']['id']}")
    assert read.status_code == 200 and read.json()["subject"]["reference"] == donor
    summary = await proxy.get(f"/fhir/{donor}/$ehr-summary")
    assert summary.status_code == 200 and summary.json()["entry"]
    for text in (conditions.text, read.text, summary.text):
        assert "S1" not in text.replace("SPS1", "")
    assert (await proxy.get("/fhir/Condition", params={"patient": "Patient/S1"})).json()["entry"] == []
    assert (await proxy.get("/fhir/Patient/S1/$ehr-summary")).status_code == 404
