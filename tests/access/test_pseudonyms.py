"""Per-collaborator stable pseudonyms (issue 8; GATEWAY_COLLABORATOR_PSEUDONYMS), both engines.

Two collaborators, A and B, see the corpus of tests/access/corpus.py with the switch on: each
gets its own stable pseudonym of every subject, never the subject code nor the other's
pseudonym, and can use what it got — read, search, history, batch — while the other's
pseudonyms and the real codes find nothing. Two app instances share the database, as
several gateway processes share PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from gateway.access.principal import Principal
from gateway.access.pseudonyms import Pseudonyms
from gateway.access.scopes import Scopes
from gateway.access.translation import Pseudonymous
from gateway.app import create_app
from gateway.served import CONFORMANCE_TYPES
from tests.access.corpus import ALL, MRN, SUBJECTS, consent, resources
from tests.access.test_consent import EXTERNAL_VISIBLE
from tests.conftest import make_settings

SECRET = "0123456789abcdef0123456789abcdef-test"
SUBJECT_SYSTEM = "https://biobank.massgeneral.org/fhir/sid/subject"
A = Principal("collab-a", "external", Scopes.parse("system/*.rs"))
B = Principal("collab-b", "external", Scopes.parse("system/*.rs"))
INTERNAL = Principal("lab", "internal", Scopes.parse("system/*.cruds"))
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
CODE = re.compile(rb"(?<![A-Za-z0-9])S\d\d(?![A-Za-z0-9])")
"""A subject code of the corpus as a whole token (specimen ids such as SPS01 contain one)."""


class Instance:
    """One gateway app of the deployment; `who` is the principal of its next requests."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.who = INTERNAL

    async def get(self, who: Principal, path: str, **kwargs: object) -> httpx.Response:
        self.who = who
        return await self.client.get(path, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def instances(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Instance, Instance]]:
    """Two gateway instances with pseudonyms on, one database, the corpus loaded."""
    settings = make_settings(database_url, tmp_path, collaborator_pseudonyms=True, pseudonym_secret=SECRET)
    apps = [create_app(settings), create_app(settings)]
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        await apps[0].state.services.store.put_many(resources())
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
                   for app in apps]
        pair = (Instance(clients[0]), Instance(clients[1]))
        for app, instance in zip(apps, pair, strict=True):
            async def authenticate(_request: object, instance: Instance = instance) -> Principal:
                return instance.who
            app.state.services.authenticate = authenticate
        try:
            yield pair
        finally:
            for client in clients:
                await client.aclose()


def matches(r: httpx.Response) -> list[dict]:
    """The resources of a searchset or history Bundle (OperationOutcome entries left out)."""
    assert r.status_code == 200, r.text
    return [e for e in r.json().get("entry", []) if e.get("search", {}).get("mode") != "outcome"]


async def pseudonym(gw: Instance, who: Principal, subject: str) -> str:
    """What `who` calls `subject`: the subject of its Specimen SP<subject>."""
    r = await gw.get(who, f"/fhir/Specimen/SP{subject}")
    assert r.status_code == 200, r.text
    return r.json()["subject"]["reference"].removeprefix("Patient/")


async def test_collaborators_get_different_stable_pseudonyms(instances) -> None:
    one, two = instances
    a = await pseudonym(one, A, "S01")
    b = await pseudonym(one, B, "S01")
    assert a != b and FHIR_ID.match(a) and FHIR_ID.match(b) and "S01" not in (a, b)
    assert await pseudonym(two, A, "S01") == a  # the same on another instance
    assert await pseudonym(one, A, "S02") not in (a, b)
    patient = (await one.get(A, f"/fhir/Patient/{a}")).json()
    assert patient["id"] == a
    assert [i["value"] for i in patient["identifier"]] == [a]
    consents = (await one.get(A, "/fhir/Consent", params={"patient": a})).json()["entry"]
    assert [e["resource"]["patient"]["reference"] for e in consents] == [f"Patient/{a}"]


async def test_each_reads_and_searches_by_its_own_pseudonym_only(instances) -> None:
    one, two = instances
    a = await pseudonym(one, A, "S01")
    b = await pseudonym(one, B, "S01")
    found = {"read": f"/fhir/Patient/{a}", "vread": f"/fhir/Patient/{a}/_history/1"}
    for name, path in found.items():
        r = await two.get(A, path)
        assert r.status_code == 200 and r.json()["id"] == a, name
        assert r.headers["content-location"] == f"http://testserver/fhir/Patient/{a}/_history/1"
        for other in (path.replace(a, b), path.replace(a, "S01")):
            assert (await two.get(A, other)).status_code == 404, other
    searches = {"/fhir/Specimen": ["subject=Patient/{}", "patient={}", "subject={}", "subject:Patient._id={}",
                                   f"subject.identifier={SUBJECT_SYSTEM}|{{}}"],
                "/fhir/Patient": ["_id={}", f"identifier={SUBJECT_SYSTEM}|{{}}", "identifier={}"]}
    for path, queries in searches.items():
        for query in queries:
            assert len(matches(await two.get(A, f"{path}?{query.format(a)}"))) == 1, (path, query)
            for other in (b, "S01"):
                assert matches(await two.get(A, f"{path}?{query.format(other)}")) == [], (query, other)
    history = (await two.get(A, f"/fhir/Patient/{a}/_history")).json()
    assert [e["fullUrl"] for e in history["entry"]] == [f"http://testserver/fhir/Patient/{a}"]
    assert history["entry"][0]["request"]["url"] == f"Patient/{a}"
    assert matches(await two.get(A, f"/fhir/Patient/{b}/_history")) == []
    urls = (f"Patient/{a}", f"Patient/{b}", f"Specimen?patient={a}")
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": u}}
                                                                  for u in urls]}
    two.who = A
    answer = (await two.client.post("/fhir", json=batch, headers={"Content-Type": "application/fhir+json"})).json()
    assert answer["entry"][0]["resource"]["id"] == a and answer["entry"][0]["fullUrl"].endswith(f"/Patient/{a}")
    assert answer["entry"][1]["response"]["status"] == "404"
    assert b in answer["entry"][1]["response"]["outcome"]["issue"][0]["diagnostics"]
    assert len(answer["entry"][2]["resource"]["entry"]) == 1


async def test_nothing_a_collaborator_reaches_names_a_subject_code_or_another_pseudonym(instances) -> None:
    one, _ = instances
    theirs = {await pseudonym(one, B, s) for s in EXTERNAL_VISIBLE}
    ours = {await pseudonym(one, A, s) for s in EXTERNAL_VISIBLE}
    history = (await one.get(A, "/fhir/_history?_count=1000")).json()
    data = [e for e in history["entry"] if e["resource"]["resourceType"] not in CONFORMANCE_TYPES]
    bodies = [orjson.dumps(data)]
    for path in ("/fhir/Specimen?_include=Specimen:subject&_count=100", "/fhir/Patient?_revinclude=Specimen:subject",
                 "/fhir/Group/cohort", "/fhir/ResearchStudy", "/fhir/Consent?_count=100"):
        bodies.append((await one.get(A, path)).content)
    for p in ours:
        for path in (f"/fhir/Patient/{p}", f"/fhir/Patient/{p}/_history", f"/fhir/Specimen?patient={p}"):
            bodies.append((await one.get(A, path)).content)
    blob = b"\n".join(bodies)
    assert CODE.findall(blob) == []
    assert not [p for p in theirs if p.encode() in blob]
    assert {r for r in re.findall(rb"Patient/([A-Za-z0-9\-.]+)", blob)} == {p.encode() for p in ours}
    for secret in (MRN.encode(), b"MGH-", b"F1/R2/B3/A4", b"storage-location"):
        assert secret not in blob
    cohort = (await one.get(A, "/fhir/Group/cohort")).json()
    assert {m["entity"]["reference"][8:] for m in cohort["member"]} == ours


async def test_page_tokens_and_echoed_parameters_carry_no_subject_code(instances) -> None:
    one, two = instances
    a = await pseudonym(one, A, "S01")
    first = (await one.get(A, "/fhir/Patient?_count=2")).json()
    seen = [e["resource"]["id"] for e in first["entry"]]
    following = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert CODE.findall(orjson.dumps(first["link"])) == []
    second = (await two.get(A, following)).json()
    seen += [e["resource"]["id"] for e in second["entry"]]
    assert len(set(seen)) == 4
    assert (await one.get(B, following)).status_code == 400  # A's token is A's
    echoed = await one.get(A, f"/fhir/Specimen?patient={a}&collected={a}&_count=5")
    assert a in echoed.text and CODE.findall(echoed.content) == []
    strict = await one.get(A, f"/fhir/Specimen?collected={a}", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400 and a in strict.text and CODE.findall(strict.content) == []


async def test_a_withheld_subject_answers_in_the_collaborators_words(instances) -> None:
    one, _ = instances
    a = await pseudonym(one, A, "S01")
    one.who = INTERNAL
    withdrawn = consent("C01w", "S01", "WITHDRAWN", ALL, signed="2025-01-01",
                        withdrawal=("NO_FURTHER_USE", "2025-01-02"))
    r = await one.client.put("/fhir/Consent/C01w", content=orjson.dumps(withdrawn),
                             headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    gone = await one.get(A, f"/fhir/Patient/{a}")
    assert gone.status_code == 404 and a in gone.text and CODE.findall(gone.content) == []
    assert matches(await one.get(A, f"/fhir/Specimen?patient={a}")) == []


async def test_internal_principals_see_subject_codes(instances) -> None:
    one, _ = instances
    await pseudonym(one, A, "S01")
    specimen = (await one.get(INTERNAL, "/fhir/Specimen/SPS01")).json()
    assert specimen["subject"] == {"reference": "Patient/S01"}
    patient = (await one.get(INTERNAL, "/fhir/Patient/S01")).json()
    assert patient["id"] == "S01" and MRN in {i["system"] for i in patient["identifier"]}


async def test_switch_off_collaborators_see_subject_codes(app_client: httpx.AsyncClient) -> None:
    app = app_client.app  # type: ignore[attr-defined]
    await app.state.services.store.put_many(resources())

    async def external(_request: object) -> Principal:
        return A

    app.state.services.authenticate = external
    assert (await app_client.get("/fhir/Specimen/SPS01")).json()["subject"] == {"reference": "Patient/S01"}
    assert (await app_client.get("/fhir/Patient/S01")).json()["id"] == "S01"
    assert set(SUBJECTS) >= EXTERNAL_VISIBLE


@pytest.mark.parametrize("secret", [None, "too-short"])
def test_switch_on_without_a_proper_secret_refuses_to_start(tmp_path: Path, secret: str | None) -> None:
    settings = make_settings(f"sqlite:///{tmp_path}/gw.db", tmp_path, collaborator_pseudonyms=True,
                             pseudonym_secret=secret)
    with pytest.raises(ValueError, match="GATEWAY_PSEUDONYM_SECRET"):
        create_app(settings)


def test_page_links_keep_the_parameters_as_written() -> None:
    """`link` seals `_page` and gives back the client's words for what was translated."""
    names = Pseudonymous(Pseudonyms(SECRET.encode(), None), "collab-a")  # type: ignore[arg-type]
    names.said = {"S01": "p1", "!S02": "S02"}
    url = names.link("http://x/fhir/Specimen?subject=Patient%2FS01&patient=%21S02&_page=eyJpIjoiUzAxIn0")
    query = parse_qs(urlsplit(url).query)
    assert query["subject"] == ["Patient/p1"] and query["patient"] == ["S02"]
    assert names.pseudonyms.unseal("collab-a", query["_page"][0]) == "eyJpIjoiUzAxIn0"
    assert names.pseudonyms.unseal("collab-b", query["_page"][0]) is None
