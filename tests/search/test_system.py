"""System-level search (`GET /fhir?...`, `POST /fhir/_search`): common parameters and those shared by
every `_type`, one keyset order across types, includes, result parameters, lenient/strict handling and
the same access rules as type-level search — expected results written by hand (corpus.py), both engines."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.access.principal import Principal
from gateway.access.scopes import Scopes
from gateway.store import Store
from tests.access.corpus import MRN, resources

from ..conftest import PgDatabases
from .conftest import Gateway, principal, running
from .corpus import BB

STRICT = {"prefer": "handling=strict"}
SPECIMENS = {f"Specimen/s{i}" for i in range(1, 6)}
PATIENTS = {"Patient/p1", "Patient/p2", "Patient/p3"}
CONSENTS = {"Consent/c1", "Consent/c2", "Consent/c3"}


async def _bundle(gw: Gateway, query: str, **headers: str) -> dict[str, Any]:
    r = await gw.client.get(f"/fhir?{query}", headers=headers)
    assert r.status_code == 200, (query, r.text)
    return r.json()


def _mode(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
            if e["search"]["mode"] == mode]


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((link["url"] for link in bundle.get("link", []) if link["relation"] == relation), None)


async def _walk(gw: Gateway, url: str | None) -> list[str]:
    """Every match, following `next` links."""
    out: list[str] = []
    while url:
        bundle = (await gw.client.get(url)).json()
        out += _mode(bundle)
        url = _link(bundle, "next")
    return out


CASES: list[tuple[str, set[str]]] = [
    ("_id=s1,p1,c1,o1", {"Specimen/s1", "Patient/p1", "Consent/c1", "Organization/o1"}),
    ("_type=Specimen,Patient&_id=s1,p1,c1", {"Specimen/s1", "Patient/p1"}),
    ("_type=Specimen&_type=Patient&_id=s1,p1,c1", {"Specimen/s1", "Patient/p1"}),
    ("_type=Specimen,Patient&_lastUpdated=gt2000-01-01", SPECIMENS | PATIENTS),
    ("_type=Specimen,Patient&_lastUpdated=lt2000-01-01", set()),
    ("_tag=urn:tag|pilot", {"Specimen/s1"}),
    ("_security=R", {"Specimen/s1"}),
    (f"_profile={BB}/StructureDefinition/BiobankSpecimen", {"Specimen/s1"}),
    ("_type=Patient,Specimen&identifier=urn:mrn|M1,urn:biobank|S-001", {"Patient/p1", "Specimen/s1"}),
    ("_type=Consent,Specimen&patient=p1", {"Consent/c1", "Specimen/s1", "Specimen/s2"}),
    ("_type=Consent,Specimen&patient:Patient.gender=male", {"Consent/c2", "Specimen/s3", "Specimen/s5"}),
    ("_type=Consent,Specimen,ResearchSubject&patient=p2", {"Consent/c2", "Specimen/s3", "Specimen/s5",
                                                            "ResearchSubject/rs2"}),
]


@pytest.mark.parametrize(("query", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_system_search_finds_exactly_the_expected_resources(gw: Gateway, query: str, expected: set[str]
                                                                  ) -> None:
    found = _mode(await _bundle(gw, f"{query}&_count=100", **STRICT))
    assert sorted(found) == sorted(expected)


async def test_post_search_equals_get(gw: Gateway) -> None:
    get = await _bundle(gw, "_type=Consent,Specimen&patient=p1&_include=Specimen:subject")
    post = await gw.client.post("/fhir/_search", data={"patient": "p1", "_include": "Specimen:subject"},
                                params={"_type": "Consent,Specimen"})
    assert post.status_code == 200
    assert post.json()["entry"] == get["entry"] and post.json()["total"] == get["total"]
    assert (await gw.client.post("/fhir/_search", json={"_type": "Patient"})).status_code == 415


async def test_order_is_type_then_id_and_pages_cross_types_exactly_once(gw: Gateway) -> None:
    everything = _mode(await _bundle(gw, "_type=Specimen,Patient,Consent&_count=100"))
    assert everything == [*sorted(CONSENTS), *sorted(PATIENTS), *sorted(SPECIMENS)]
    first = await _bundle(gw, "_type=Specimen,Patient,Consent&_count=2")
    assert _link(first, "self") == "http://testserver/fhir?_type=Specimen%2CPatient%2CConsent&_count=2"
    assert await _walk(gw, _link(first, "self")) == everything
    second = (await gw.client.get(_link(first, "next"))).json()
    assert _mode(second) == ["Consent/c3", "Patient/p1"]
    assert _mode((await gw.client.get(_link(second, "previous"))).json()) == ["Consent/c1", "Consent/c2"]
    walked = await _walk(gw, "/fhir?_count=3")  # every type (AuditEvents are written while it walks)
    assert len(walked) == len(set(walked))
    assert {t for t in _mode(await _bundle(gw, "_count=1000")) if not t.startswith("AuditEvent/")} <= set(walked)


@pytest.mark.parametrize(("sort", "expected"), [
    ("_id", ["Patient/p1", "Patient/p2", "Patient/p3", "Specimen/s1", "Specimen/s2", "Specimen/s3", "Specimen/s4",
             "Specimen/s5"]),
    ("-_id", ["Specimen/s5", "Specimen/s4", "Specimen/s3", "Specimen/s2", "Specimen/s1", "Patient/p3", "Patient/p2",
              "Patient/p1"]),
])
async def test_sort_on_common_parameters_spans_types(gw: Gateway, sort: str, expected: list[str]) -> None:
    query = f"_type=Patient,Specimen&_sort={sort}"
    assert _mode(await _bundle(gw, query, **STRICT)) == expected
    assert await _walk(gw, f"/fhir?{query}&_count=3") == expected
    by_time = await _walk(gw, "/fhir?_type=Patient,Specimen&_sort=-_lastUpdated&_count=3")
    assert sorted(by_time) == sorted(expected)


async def test_include_and_revinclude_per_type_of_match(gw: Gateway) -> None:
    b = await _bundle(gw, "_id=s2,rs1&_include=Specimen:subject&_include=ResearchSubject:study", **STRICT)
    assert sorted(_mode(b)) == ["ResearchSubject/rs1", "Specimen/s2"]
    assert sorted(_mode(b, "include")) == ["Patient/p1", "ResearchStudy/st1"]
    b = await _bundle(gw, "_type=Patient,Organization&_id=p3,o1&_revinclude=Consent:patient", **STRICT)
    assert sorted(_mode(b, "include")) == ["Consent/c3"]


async def test_summary_elements_and_total(gw: Gateway) -> None:
    count = await _bundle(gw, "_type=Specimen,Patient&_summary=count")
    assert count["total"] == 8 and not count.get("entry")
    assert (await _bundle(gw, "_type=Specimen,Patient&_count=1&_total=accurate"))["total"] == 8
    assert "total" not in await _bundle(gw, "_type=Specimen,Patient&_count=1&_total=none")
    shaped = (await _bundle(gw, "_type=Specimen,Patient&_id=s1,p1&_elements=status"))["entry"]
    assert [set(e["resource"]) for e in shaped] == [{"resourceType", "id", "meta"},
                                                     {"resourceType", "id", "meta", "status"}]
    summary = (await _bundle(gw, "_id=s1&_summary=true"))["entry"][0]["resource"]
    assert "collection" not in summary and summary["status"] == "available"


@pytest.mark.parametrize("query", [
    "_type=Patient,Specimen&gender=female",  # not a parameter of Specimen
    "_type=Specimen,Patient&status=available",  # not a parameter of Patient
    "colour=red",
    "_sort=status",
    "_type=Spaceship",
    "_type=Condition",  # owned by the EHR: not searched here
])
async def test_lenient_ignores_and_reports_strict_refuses(gw: Gateway, query: str) -> None:
    lenient = await _bundle(gw, query)
    outcome = [e for e in lenient["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcome) == 1 and outcome[0]["resource"]["issue"][0]["severity"] == "warning", query
    if query.startswith("_type=Patient,Specimen") or query.startswith("_type=Specimen,Patient"):
        assert sorted(_mode(lenient)) == sorted(PATIENTS | SPECIMENS)
        assert _link(lenient, "self") == "http://testserver/fhir?_type=" + query.split("&")[0][6:].replace(",", "%2C")
    strict = await gw.client.get(f"/fhir?{query}", headers=STRICT)
    assert strict.status_code == 400, query
    assert strict.json()["resourceType"] == "OperationOutcome"


async def test_only_unknown_types_search_nothing(gw: Gateway) -> None:
    bundle = await _bundle(gw, "_type=Spaceship")
    assert _mode(bundle) == [] and bundle["total"] == 0


@pytest.mark.parametrize("query", [
    "_type=Patient",
    "_type=Specimen,Patient",
    "_type=Specimen&_include=Specimen:subject",
    "_include=Specimen:subject",
    "_revinclude=Consent:patient",
    "_type=Specimen&subject:Patient.name=muller",
])
async def test_specimen_token_cannot_reach_other_types(gw: Gateway, query: str) -> None:
    gw.act_as(principal("system/Specimen.rs"))
    r = await gw.client.get(f"/fhir?{query}")
    assert r.status_code == 403, query
    assert "insufficient_scope" in r.json()["issue"][0]["diagnostics"]
    assert (await gw.client.post("/fhir/_search", data={"_type": "Patient"})).status_code == 403


async def test_specimen_token_searches_only_specimens(gw: Gateway) -> None:
    gw.act_as(principal("system/Specimen.rs"))
    assert _mode(await _bundle(gw, "_id=s1,p1,c1")) == ["Specimen/s1"]
    assert (await _bundle(gw, "_summary=count"))["total"] == 5
    wildcard = await _bundle(gw, "_id=s2&_include=*&_revinclude=*")
    assert _mode(wildcard, "include") == ["Specimen/s1"]


async def test_patient_token_sees_only_its_compartment(gw: Gateway) -> None:
    gw.act_as(principal("patient/Specimen.rs patient/Patient.rs", "p1"))
    assert sorted(_mode(await _bundle(gw, "_count=100"))) == ["Patient/p1", "Specimen/s1", "Specimen/s2"]
    assert sorted(_mode(await _bundle(gw, "_id=s1,s3,p1,p2"))) == ["Patient/p1", "Specimen/s1"]
    assert (await _bundle(gw, "_type=Specimen,Patient&_count=1&_total=estimate"))["total"] == 3
    assert (await gw.client.get("/fhir?_type=Consent")).status_code == 403


def _specimen(i: int) -> dict[str, Any]:
    return {"resourceType": "Specimen", "id": f"sp-{i:04d}", "status": "available",
            "subject": {"reference": f"Patient/pt-{i % 50:04d}"}}


def _patient(i: int, note: str = "") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": f"pt-{i:04d}", "gender": "other", **({"name": [{"text": note}]}
                                                                                 if note else {})}


async def _write_until(store: Store, stop: asyncio.Event) -> None:
    """New matches of both types and updates of original ones, interleaved with the walk."""
    k = 0
    while not stop.is_set():
        k += 1
        await store.put_many([_specimen(2 * k + 1), _patient(2 * k + 1), _patient(2 * k % 600, f"v{k}")])
        await asyncio.sleep(0)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_pages_across_types_return_every_match_once_while_writing(engine: str, pg_databases: PgDatabases
                                                                        ) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="gw-system-"))
    url = f"sqlite:///{tmp}/gateway.db" if engine == "sqlite" else await pg_databases.create()
    originals = [*(_specimen(i) for i in range(0, 600, 2)), *(_patient(i) for i in range(0, 600, 2))]
    async for gw in running(url, tmp, lambda: originals):
        stop = asyncio.Event()
        task = asyncio.create_task(_write_until(gw.app.state.services.store, stop))
        seen = await _walk(gw, "/fhir?_type=Specimen,Patient&_count=25")
        stop.set()
        await task
        assert len(seen) == len(set(seen))
        assert {f"{r['resourceType']}/{r['id']}" for r in originals} <= set(seen)


async def test_external_principal_gets_consented_pseudonymised_resources(database_url: str, tmp_path: Path) -> None:
    """The consent corpus of the access tests: a collaborator sees the subjects whose consent permits
    research and external sharing (S01, S02, S06, S11, S12 — tests/access/test_consent.py), pseudonymised."""
    async for gw in running(database_url, tmp_path, resources):
        gw.act_as(Principal("collaborator", "external", Scopes.parse("system/*.rs")))
        bundle = await _bundle(gw, "_type=Patient,Specimen,Group&_count=100&_total=estimate")
        visible = {"S01", "S02", "S06", "S11", "S12"}
        assert sorted(_mode(bundle)) == sorted({"Group/cohort", *(f"Patient/{p}" for p in visible),
                                                *(f"Specimen/SP{p}" for p in visible)})
        assert bundle["total"] == 11
        paged = await _bundle(gw, "_type=Patient,Specimen&_count=1&_total=estimate")
        assert paged["total"] == 10  # exact under a consent restriction, even where estimates exist
        blob = orjson.dumps(bundle)
        assert MRN.encode() not in blob and b"storage-location" not in blob and b"MGH-" not in blob
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "Patient":
                assert resource["birthDate"] == "1961"
            if resource["resourceType"] == "Specimen":
                assert {s["code"] for s in resource["meta"]["security"]} >= {"PSEUDED"}
            if resource["resourceType"] == "Group":
                assert {m["entity"]["reference"][8:] for m in resource["member"]} == visible
        assert (await gw.client.get("/fhir?_type=AuditEvent")).status_code == 403
        everything = await _walk(gw, "/fhir?_count=50")
        assert not any(t.startswith("AuditEvent/") for t in everything)
        assert {t for t in everything if t.startswith("Patient/")} == {f"Patient/{p}" for p in visible}
