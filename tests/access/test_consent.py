"""Consent and pseudonymisation on every path a collaborator can take (both engines).

The expected visible subjects are written by hand from the rules of issue 8 and the
"consent in force" contract (INTERFACES.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from gateway.access.consent import Decision
from gateway.access.gate import Decided, Gate
from gateway.access.principal import Principal
from gateway.access.scopes import Scopes
from gateway.app import create_app
from gateway.served import CONFORMANCE_TYPES
from tests.access.corpus import ALL, MRN, SUBJECTS, B, consent, resources
from tests.conftest import make_settings

EXTERNAL_VISIBLE = {"S01", "S02", "S06", "S11", "S12"}
COMMERCIAL_VISIBLE = {"S01", "S06"}
GENETIC_SHOWN = {"S01", "S06", "S11"}


def principal(audience: str, *, commercial: bool = False, scopes: str = "system/*.rs") -> Principal:
    return Principal(f"{audience}-client", audience, Scopes.parse(scopes), commercial=commercial)  # type: ignore[arg-type]


@pytest.fixture
async def biobank(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, dict]]:
    """A loaded corpus and a client whose principal the test chooses through `who["p"]`."""
    app = create_app(make_settings(database_url, tmp_path))
    who: dict = {"p": principal("internal", scopes="system/*.cruds")}

    async def authenticate(_request: object) -> Principal:
        return who["p"]

    async with app.router.lifespan_context(app):
        app.state.services.authenticate = authenticate
        await app.state.services.store.put_many(resources())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, who


async def visible_by_read(client: httpx.AsyncClient) -> set[str]:
    seen = set()
    for pid in SUBJECTS:
        r = await client.get(f"/fhir/Specimen/SP{pid}")
        assert r.status_code in (200, 404), r.text
        if r.status_code == 200:
            seen.add(pid)
    return seen


@pytest.mark.parametrize("who,expected", [
    (principal("internal"), set(SUBJECTS)),
    (principal("external"), EXTERNAL_VISIBLE),
    (principal("external", commercial=True), COMMERCIAL_VISIBLE),
])
async def test_read_shows_only_consented_subjects(biobank, who: Principal, expected: set[str]) -> None:
    client, current = biobank
    current["p"] = who
    assert await visible_by_read(client) == expected
    patients = {pid for pid in SUBJECTS if (await client.get(f"/fhir/Patient/{pid}")).status_code == 200}
    assert patients == expected


@pytest.mark.parametrize("who,expected", [
    (principal("internal"), set(SUBJECTS)),
    (principal("external"), EXTERNAL_VISIBLE),
])
async def test_history_and_batch_follow_the_same_rules(biobank, who: Principal, expected: set[str]) -> None:
    client, current = biobank
    current["p"] = who
    history = (await client.get("/fhir/Specimen/_history?_count=100")).json()
    assert {e["resource"]["subject"]["reference"][8:] for e in history["entry"]} == expected
    system = (await client.get("/fhir/_history?_count=500")).json()
    assert {e["resource"]["subject"]["reference"][8:] for e in system["entry"]
            if e["resource"]["resourceType"] == "Specimen"} == expected
    batch = {"resourceType": "Bundle", "type": "batch",
             "entry": [{"request": {"method": "GET", "url": f"Specimen/SP{pid}"}} for pid in SUBJECTS]}
    answer = (await client.post("/fhir", json=batch, headers={"Content-Type": "application/fhir+json"})).json()
    shown = {e["resource"]["subject"]["reference"][8:] for e in answer["entry"] if "resource" in e}
    assert shown == expected


async def test_external_copies_are_pseudonymised(biobank) -> None:
    client, current = biobank
    current["p"] = principal("external")
    spec = (await client.get("/fhir/Specimen/SPS02")).json()
    assert "text" not in spec and "note" not in spec
    urls = {e["url"] for e in spec.get("extension", [])}
    assert not any("storage-location" in u or "genotyping" in u for u in urls)
    codes = {s["code"] for s in spec["meta"]["security"]}
    assert codes == {"PSEUDED", "REDACTED"}
    genetic = (await client.get("/fhir/Specimen/SPS11")).json()
    assert any("genotyping" in e["url"] for e in genetic["extension"])
    pat = (await client.get("/fhir/Patient/S01")).json()
    assert [i["system"] for i in pat["identifier"]] == ["https://biobank.massgeneral.org/fhir/sid/subject"]
    assert pat["birthDate"] == "1961"
    cohort = (await client.get("/fhir/Group/cohort")).json()
    assert {m["entity"]["reference"][8:] for m in cohort["member"]} == EXTERNAL_VISIBLE
    assert cohort["quantity"] == len(EXTERNAL_VISIBLE)


async def test_internal_sees_mrn_and_storage(biobank) -> None:
    client, _ = biobank
    pat = (await client.get("/fhir/Patient/S05")).json()
    assert MRN in {i["system"] for i in pat["identifier"]}
    spec = (await client.get("/fhir/Specimen/SPS05")).json()
    assert any("storage-location" in e["url"] for e in spec["extension"])


async def test_privacy_scan_of_everything_external_reaches(biobank) -> None:
    """Every subject-data resource an external principal can reach. The published profiles
    (StructureDefinition BiobankPatient) name the MRN identifier *system* to define the
    internal-only slice; they carry no MRN value and are left out of this scan."""
    client, current = biobank
    current["p"] = principal("external")
    history = (await client.get("/fhir/_history?_count=1000")).json()
    data = [e for e in history["entry"] if e.get("resource", {}).get("resourceType") not in CONFORMANCE_TYPES]
    assert len(data) > 10
    bodies = [orjson.dumps(data)]
    for pid in SUBJECTS:
        for path in (f"/fhir/Patient/{pid}", f"/fhir/Specimen/SP{pid}", f"/fhir/Patient/{pid}/_history"):
            bodies.append((await client.get(path)).content)
    blob = b"\n".join(bodies)
    assert MRN.encode() not in blob
    assert b"MGH-" not in blob
    assert b"F1/R2/B3/A4" not in blob
    assert b"storage-location" not in blob


async def test_withdrawal_written_takes_effect_on_next_request(biobank) -> None:
    client, current = biobank
    current["p"] = principal("external")
    assert (await client.get("/fhir/Specimen/SPS01")).status_code == 200
    current["p"] = principal("internal", scopes="system/*.cruds")
    withdrawn = consent("C01w", "S01", "WITHDRAWN", ALL, signed="2025-01-01",
                        withdrawal=("NO_FURTHER_USE", "2025-01-02"))
    r = await client.put("/fhir/Consent/C01w", content=orjson.dumps(withdrawn),
                         headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    current["p"] = principal("external")
    assert (await client.get("/fhir/Specimen/SPS01")).status_code == 404
    current["p"] = principal("internal", scopes="system/*.cruds")
    assert (await client.delete("/fhir/Consent/C01w")).status_code == 204
    current["p"] = principal("external")
    assert (await client.get("/fhir/Specimen/SPS01")).status_code == 200


async def test_collaborators_never_write(biobank) -> None:
    client, current = biobank
    current["p"] = principal("external", scopes="system/*.cruds")
    r = await client.put("/fhir/Patient/S01", json={"resourceType": "Patient", "id": "S01"},
                         headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 403


@pytest.mark.parametrize("who,expected", [
    (principal("internal"), set(SUBJECTS)),
    (principal("external"), EXTERNAL_VISIBLE),
    (principal("external", commercial=True), COMMERCIAL_VISIBLE),
])
async def test_search_and_includes_follow_the_same_rules(biobank, who: Principal, expected: set[str]) -> None:
    client, current = biobank
    current["p"] = who
    found = (await client.get("/fhir/Specimen?_count=100&_total=accurate")).json()
    assert {e["resource"]["subject"]["reference"][8:] for e in found["entry"]} == expected
    assert found["total"] == len(expected)
    included = (await client.get("/fhir/Specimen?_include=Specimen:subject&_count=100")).json()
    patients = {e["resource"]["id"] for e in included["entry"] if e["search"]["mode"] == "include"}
    assert patients == expected
    reverse = (await client.get("/fhir/Patient?_revinclude=Specimen:subject&_count=100")).json()
    specimens = {e["resource"]["subject"]["reference"][8:] for e in reverse["entry"]
                 if e["resource"]["resourceType"] == "Specimen"}
    assert specimens == expected
    assert {e["resource"]["id"] for e in reverse["entry"] if e["search"]["mode"] == "match"} == expected
    count = (await client.get("/fhir/Consent?_summary=count")).json()
    consents_visible = sum(len(c) for pid, c in SUBJECTS.items() if pid in expected)
    assert count["total"] == consents_visible


@pytest.mark.parametrize("query", [
    f"/fhir/Patient?identifier={MRN}|MGH-7000000",
    "/fhir/Patient?identifier=MGH-7000000",
    "/fhir/Specimen?subject:Patient.identifier=MGH-7000000",
    "/fhir/Specimen?patient.identifier=MGH-7000000",
    "/fhir/Patient?_has:Specimen:subject:_id=SPS01&identifier=MGH-7000000",
    "/fhir?_type=Patient,Specimen&identifier=MGH-7000000",
])
async def test_an_mrn_matches_nothing_for_external_principals(biobank, query: str) -> None:
    """S01 consented to external sharing, so a collaborator sees it — but must not learn that hospital
    patient MGH-7000000 is biobank subject S01 by searching with the MRN (a re-identification door)."""
    client, who = biobank
    who["p"] = principal("external")
    found = (await client.get(query)).json()
    assert found["resourceType"] == "Bundle" and not [e for e in found.get("entry", [])
                                                     if e["search"]["mode"] == "match"]
    assert (await client.get(f"/fhir/Patient?identifier={B}/sid/subject|S01")).json()["total"] == 1
    who["p"] = principal("internal")
    assert [e["resource"]["id"] for e in (await client.get(query)).json()["entry"]
            if e["search"]["mode"] == "match"] in (["S01"], ["SPS01"])


async def test_load_provenance_is_internal_only(biobank) -> None:
    """A load's Provenance targets every subject loaded — those who refused sharing too."""
    client, who = biobank
    targets = [{"reference": f"Patient/{pid}"} for pid in SUBJECTS]
    provenance = {"resourceType": "Provenance", "id": "load-1", "target": targets, "recorded": "2026-11-28T10:00:00Z",
                  "agent": [{"who": {"display": "biobank-gateway load"}}]}
    assert (await client.put("/fhir/Provenance/load-1", json=provenance)).status_code in (200, 201)
    who["p"] = principal("external")
    assert (await client.get("/fhir/Provenance/load-1")).status_code == 404
    assert (await client.get("/fhir/Provenance")).status_code == 403
    assert (await client.get("/fhir/Patient?_revinclude=Provenance:target")).status_code == 403
    wildcard = (await client.get("/fhir/Patient?_revinclude=*")).json()
    assert wildcard["entry"] and not [e for e in wildcard["entry"] if e["resource"]["resourceType"] == "Provenance"]
    who["p"] = principal("internal")
    assert (await client.get("/fhir/Provenance/load-1")).status_code == 200


@pytest.mark.parametrize("who", [principal("external"), principal("external", commercial=True)])
async def test_search_entries_are_the_copies_reads_give(biobank, who: Principal) -> None:
    """Pages and includes carry each subject's decision from their own statement (gate.Decided), reads look
    it up: the copies are the same — consent, genotyping details, pseudonymisation and all."""
    client, current = biobank
    current["p"] = who
    for query in ("/fhir/Specimen?_include=Specimen:subject&_count=100",
                  "/fhir/Patient?_revinclude=Specimen:subject&_revinclude=Consent:patient&_count=100"):
        entries = (await client.get(query)).json()["entry"]
        assert entries
        for entry in entries:
            resource = entry["resource"]
            assert (await client.get(f"/fhir/{resource['resourceType']}/{resource['id']}")).json() == resource


class _NoLookups:
    """A store whose decisions must not be looked up: every one comes with its resource."""

    class db:  # stands for Store.db
        dialect = "sqlite"

        @staticmethod
        async def fetch_points(sql: str, params: object) -> list:
            raise AssertionError(f"looked up: {sql}")


async def test_the_gate_takes_the_decision_read_with_a_resource() -> None:
    """A Decided resource is released by its own decision, never by a second lookup: none, or one that does
    not permit sharing, keeps it in; one that permits releases it, with genotyping only if that is permitted."""
    gate = Gate(frozenset({"Specimen"}), _NoLookups())  # type: ignore[arg-type]
    spec = resources()[next(i for i, r in enumerate(resources()) if r["resourceType"] == "Specimen")]
    content = orjson.dumps(spec)

    def decided(decision: Decision | None) -> Decided:
        return Decided("Specimen", spec["id"], 1, 0, False, "S99", content, decision=decision)

    def permits(*kinds: str) -> Decision:
        return Decision("S99", "C99", "ACTIVE", frozenset(kinds), None, None, None)

    sharing = ("research", "external-sharing")
    out = await gate.disclose_many(principal("external"), [
        decided(None), decided(permits("research")), decided(permits(*sharing)), decided(permits(*sharing, "genetic")),
        decided(Decision("S99", "C99", "WITHDRAWN", frozenset(sharing), None, "NO_FURTHER_USE", 0))])
    assert out[0] is None and out[1] is None and out[4] is None
    assert out[2] is not None and out[3] is not None
    genotyping = [b"genotyping" in body for body in (out[2], out[3])]
    assert genotyping == [False, b"genotyping" in content]
    assert await gate.disclose_many(principal("external", commercial=True), [decided(permits(*sharing))]) == [None]
