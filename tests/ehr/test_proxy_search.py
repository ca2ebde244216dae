"""Searching and reading EHR-proxied types through the gateway: patient translation, parameter
checks, paging tokens, the answer cache (fresh, revalidated, bypassed)."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

from tests.ehr.conftest import EHR, EXTERNAL, INTERNAL, FakeEhr, Gateway
from tests.ehr.upstream.data import Dataset, mrn

MRN_QUERY = f"identifier=http%3A%2F%2Fhospital.massgeneral.org%2Ffhir%2Fsid%2Fmrn%7C{mrn(1)}"


async def test_internal_search_is_translated_to_the_ehr_patient_and_sees_real_ids(
        gateway: Gateway, fake_ehr: FakeEhr, dataset: Dataset) -> None:
    r = await gateway.as_(INTERNAL).client.get("/fhir/Condition", params={"patient": "Patient/S1"})
    assert r.status_code == 200, r.text
    bundle = r.json()
    ehr_patient = dataset.patient_by_mrn[mrn(1)]
    expected = {c["id"] for c in dataset.resources["Condition"].values()
                if c["subject"]["reference"] == f"Patient/{ehr_patient}"}
    assert {e["resource"]["id"] for e in bundle["entry"]} == expected
    assert all(e["resource"]["subject"]["reference"] == f"Patient/{ehr_patient}" for e in bundle["entry"])
    assert all(e["fullUrl"].startswith("http://testserver/fhir/Condition/") for e in bundle["entry"])
    lookups = fake_ehr.calls("/fhir/Patient")
    assert len(lookups) == 1 and lookups[0].url.query.decode() == MRN_QUERY
    searched = fake_ehr.calls("/fhir/Condition")[0]
    assert parse_qs(searched.url.query.decode()) == {"patient": [ehr_patient]}
    assert EHR not in r.text and "ehr.test" not in r.text


async def test_translation_is_looked_up_once_and_cached(gateway: Gateway, fake_ehr: FakeEhr) -> None:
    for type_ in ("Condition", "Observation", "MedicationRequest"):
        r = await gateway.as_(INTERNAL).client.get(f"/fhir/{type_}", params={"subject": "S1"})
        assert r.status_code == 200
    assert len(fake_ehr.calls("/fhir/Patient")) == 1


async def test_a_patient_without_an_ehr_record_gets_an_empty_bundle_without_asking_the_ehr(
        gateway: Gateway, fake_ehr: FakeEhr) -> None:
    for subject in ("S4", "unknown-patient"):
        r = await gateway.as_(INTERNAL).client.get("/fhir/Condition", params={"patient": subject})
        assert r.status_code == 200 and r.json()["entry"] == []
    assert fake_ehr.calls("/fhir/Condition") == []
    r = await gateway.client.get("/fhir/Condition", params={"patient": "S5"})  # MRN unknown to the EHR
    assert r.json()["entry"] == [] and fake_ehr.calls("/fhir/Condition") == []


async def test_declared_parameters_pass_through_and_others_are_refused(gateway: Gateway, fake_ehr: FakeEhr) -> None:
    client = gateway.as_(INTERNAL).client
    r = await client.get("/fhir/Observation", params={"patient": "S1", "category": "laboratory", "_count": "50"})
    assert r.status_code == 200
    assert {e["resource"]["category"][0]["coding"][0]["code"] for e in r.json()["entry"]} == {"laboratory"}
    sent = parse_qs(fake_ehr.calls("/fhir/Observation")[-1].url.query.decode())
    assert sent["category"] == ["laboratory"] and sent["_count"] == ["50"]
    for bad in ({"patient": "S1", "body-site": "x"}, {"patient": "S1", "patient.name": "x"},
                {"patient": "S1", "_include": "Observation:patient"}, {"patient": "S1", "_has:x:y:z": "1"},
                {"patient": "S1,S2"}):
        refused = await client.get("/fhir/Observation", params=bad)
        assert refused.status_code == 400, bad
        assert refused.json()["resourceType"] == "OperationOutcome"
    assert "body-site" in (await client.get("/fhir/Observation", params={"patient": "S1", "body-site": "x"})
                           ).json()["issue"][0]["diagnostics"]


async def test_external_principals_must_name_a_patient(gateway: Gateway) -> None:
    r = await gateway.as_(EXTERNAL).client.get("/fhir/Condition", params={"code": "I10"})
    assert r.status_code == 400
    assert "patient" in r.json()["issue"][0]["diagnostics"]
    internal = await gateway.as_(INTERNAL).client.get("/fhir/Condition", params={"code": "I10"})
    assert internal.status_code == 200 and internal.json()["entry"]


async def test_paging_goes_through_opaque_gateway_tokens(gateway: Gateway, fake_ehr: FakeEhr,
                                                         dataset: Dataset) -> None:
    client = gateway.as_(INTERNAL).client
    seen: list[str] = []
    url: str | None = "/fhir/Observation?patient=S1"
    while url:
        r = await client.get(url)
        assert r.status_code == 200, r.text
        bundle = r.json()
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert "ehr.test" not in r.text
        url = links.get("next")
        if url:
            assert url.startswith("http://testserver/fhir/Observation?_page=")
            token = parse_qs(urlsplit(url).query)["_page"][0]
            decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            assert b"ehr.test" not in decoded and b"_offset" not in decoded
            url = url.removeprefix("http://testserver")
    ehr_patient = dataset.patient_by_mrn[mrn(1)]
    expected = [o["id"] for o in dataset.resources["Observation"].values()
                if o["subject"]["reference"] == f"Patient/{ehr_patient}"]
    assert sorted(seen) == sorted(expected) and len(expected) > 5


async def test_page_tokens_are_refused_when_altered_or_borrowed(gateway: Gateway) -> None:
    r = await gateway.as_(INTERNAL).client.get("/fhir/Observation", params={"patient": "S1"})
    next_url = next(link["url"] for link in r.json()["link"] if link["relation"] == "next")
    token = parse_qs(urlsplit(next_url).query)["_page"][0]
    tampered = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    assert (await gateway.client.get("/fhir/Observation", params={"_page": tampered})).status_code == 400
    assert (await gateway.client.get("/fhir/Condition", params={"_page": token})).status_code == 400
    other = await gateway.as_(EXTERNAL).client.get("/fhir/Observation", params={"_page": token})
    assert other.status_code == 400 and "client" in other.json()["issue"][0]["diagnostics"]


async def test_answers_are_cached_revalidated_and_bypassed(gateway: Gateway, fake_ehr: FakeEhr) -> None:
    client = gateway.as_(INTERNAL).client
    first = await client.get("/fhir/Condition", params={"patient": "S1"})
    second = await client.get("/fhir/Condition", params={"patient": "S1"})
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert len(fake_ehr.calls("/fhir/Condition")) == 1
    assert second.json()["entry"] == first.json()["entry"]
    bypass = await client.get("/fhir/Condition", params={"patient": "S1"}, headers={"Cache-Control": "no-cache"})
    assert bypass.headers["x-cache"] == "miss" and len(fake_ehr.calls("/fhir/Condition")) == 2
    assert "if-none-match" not in fake_ehr.calls("/fhir/Condition")[-1].headers
    gateway.app.state.ehr.answers.ttl = 0.0  # everything cached is stale from now on
    await client.get("/fhir/Condition", params={"patient": "S1"}, headers={"Cache-Control": "no-cache"})
    stale = await client.get("/fhir/Condition", params={"patient": "S1"})
    assert stale.headers["x-cache"] == "revalidated"
    assert fake_ehr.calls("/fhir/Condition")[-1].headers["if-none-match"].startswith('W/"')
    assert stale.json()["entry"] == first.json()["entry"]


async def test_cache_is_kept_per_disclosure_class(gateway: Gateway, fake_ehr: FakeEhr) -> None:
    internal = await gateway.as_(INTERNAL).client.get("/fhir/Condition", params={"patient": "S1"})
    external = await gateway.as_(EXTERNAL).client.get("/fhir/Condition", params={"patient": "S1"})
    assert external.headers["x-cache"] == "miss" and len(fake_ehr.calls("/fhir/Condition")) == 2
    assert {e["resource"]["id"] for e in internal.json()["entry"]} .isdisjoint(
        {e["resource"]["id"] for e in external.json()["entry"]})


async def test_internal_read_by_ehr_id(gateway: Gateway, dataset: Dataset) -> None:
    condition = next(iter(dataset.resources["Condition"].values()))
    r = await gateway.as_(INTERNAL).client.get(f"/fhir/Condition/{condition['id']}")
    assert r.status_code == 200
    assert r.json()["id"] == condition["id"] and r.json()["identifier"] == condition["identifier"]
    missing = await gateway.client.get("/fhir/Condition/doesnotexist")
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
