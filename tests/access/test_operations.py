"""$biobank-availability, $destruction-list, $recontact-list and $validate (both engines).

Corpus: tests/access/corpus.py — S01..S06 give plasma, S07..S12 DNA; expected counts by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.access.principal import Principal
from gateway.access.scopes import Scopes
from gateway.app import create_app
from tests.access.corpus import resources
from tests.conftest import make_settings

PLASMA, DNA = "119361006", "258566005"
DIM = "https://biobank.massgeneral.org/fhir/availability-dimension/specimen-type"


def principal(audience: str, scopes: str = "system/*.rs") -> Principal:
    return Principal(f"{audience}-client", audience, Scopes.parse(scopes))  # type: ignore[arg-type]


@pytest.fixture
async def biobank(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, dict]]:
    app = create_app(make_settings(database_url, tmp_path, feasibility_threshold=3))
    who: dict = {"p": principal("internal")}

    async def authenticate(_request: object) -> Principal:
        return who["p"]

    async with app.router.lifespan_context(app):
        app.state.services.authenticate = authenticate
        await app.state.services.store.put_many(resources())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            yield client, who


def strata(params: dict) -> dict[str, str]:
    """dimension code (or 'total') -> display."""
    out = {}
    for p in params["parameter"]:
        if p["name"] != "stratum":
            continue
        parts = {q["name"]: q for q in p["part"]}
        key = parts["dimension"]["valueCoding"]["code"] if "dimension" in parts else "total"
        out[key] = parts["display"]["valueString"]
        assert ("count" in parts) != parts["suppressed"]["valueBoolean"]
    return out


async def test_counts_grouped_without_suppression(biobank) -> None:
    client, _ = biobank
    r = await client.get("/fhir/$biobank-availability?group-by=specimen-type")
    assert r.status_code == 200, r.text
    assert strata(r.json()) == {PLASMA: "6", DNA: "6", "total": "12"}
    body = r.json()
    assert {"name": "threshold", "valueInteger": 3} in body["parameter"]
    assert all(p["part"][0]["valueCoding"]["system"] == DIM for p in body["parameter"]
               if p["name"] == "stratum" and p["part"][0]["name"] == "dimension")


async def test_small_cells_and_their_complement_are_suppressed(biobank) -> None:
    client, _ = biobank
    r = await client.get("/fhir/$biobank-availability?group-by=specimen-type&consented-for=genetic")
    assert strata(r.json()) == {PLASMA: "<3", DNA: "<3", "total": "4"}


async def test_external_counts_only_consenting_subjects(biobank) -> None:
    client, who = biobank
    who["p"] = principal("external")
    r = await client.get("/fhir/$biobank-availability?group-by=specimen-type")
    assert strata(r.json()) == {PLASMA: "<3", DNA: "<3", "total": "5"}
    assert b"Patient/" not in r.content and b"S0" not in r.content


async def test_filters_and_post_form(biobank) -> None:
    client, _ = biobank
    r = await client.get(f"/fhir/$biobank-availability?specimen-type={DNA}")
    assert strata(r.json()) == {"total": "6"}
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "specimen-type", "valueString": f"http://snomed.info/sct|{PLASMA}"},
        {"name": "consented-for", "valueCode": "external-sharing"}]}
    r = await client.post("/fhir/$biobank-availability", json=body, headers={"Content-Type": "application/fhir+json"})
    assert strata(r.json()) == {"total": "3"}  # S01, S02, and S06 (NO_CONTACT withdrawal: use continues)


@pytest.mark.parametrize("query", ["group-by=colour", "consented-for=everything", "genotyped=maybe", "bogus=1"])
async def test_bad_availability_questions_are_400(biobank, query: str) -> None:
    client, _ = biobank
    r = await client.get(f"/fhir/$biobank-availability?{query}")
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_destruction_list_for_internal_staff_only(biobank) -> None:
    client, who = biobank
    r = await client.get("/fhir/Specimen/$destruction-list")
    assert r.status_code == 200
    assert [e["resource"]["id"] for e in r.json()["entry"]] == ["SPS05"]
    who["p"] = principal("external")
    assert (await client.get("/fhir/Specimen/$destruction-list")).status_code == 403


async def test_recontact_list(biobank) -> None:
    client, who = biobank
    r = await client.get("/fhir/Patient/$recontact-list")
    assert [e["resource"]["id"] for e in r.json()["entry"]] == ["S01"]
    who["p"] = principal("external")
    assert (await client.get("/fhir/Patient/$recontact-list")).status_code == 403


async def test_validate_stores_nothing_and_reports(biobank) -> None:
    client, _ = biobank
    good = {"resourceType": "Patient", "id": "x1"}
    r = await client.post("/fhir/Patient/$validate", json=good, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200 and r.json()["issue"][-1]["severity"] == "information"
    bad = {"resourceType": "Specimen", "status": "nonsense"}
    wrapped = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": bad}]}
    r = await client.post("/fhir/Specimen/$validate", json=wrapped, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200
    issue = r.json()["issue"][0]
    assert issue["severity"] == "error" and issue["expression"] == ["Specimen.status"]
    assert (await client.get("/fhir/Patient/x1")).status_code == 404
