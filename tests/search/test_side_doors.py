"""The side doors of issue #7 through search: a token that may read Specimens only, and a
patient/ token, trying to reach what their scopes do not grant — by _include, _revinclude,
_has, chaining, totals and counts. Every attempt is refused or comes back empty, with
nothing counted (both engines)."""

from __future__ import annotations

import pytest

from .conftest import Gateway, principal

SPECIMENS_ONLY = "system/Specimen.rs"
PATIENT_P1 = "patient/Specimen.rs patient/Patient.rs"


@pytest.mark.parametrize("query", [
    "Specimen?_revinclude=Consent:data",
    "Specimen?_include=Specimen:subject",
    "Specimen?_include=Specimen:subject:Patient",
    "Specimen?_has:Consent:data:status=active",
    "Specimen?subject:Patient.name=muller",
    "Specimen?subject.name=muller",
    "Specimen?patient.identifier=urn:mrn|M1",
    "Specimen?status=nothing&_revinclude=Consent:data",
    "Consent?status=active",
    "Consent?_summary=count",
])
async def test_specimen_token_cannot_reach_other_types(gw: Gateway, query: str) -> None:
    gw.act_as(principal(SPECIMENS_ONLY))
    r = await gw.client.get(f"/fhir/{query}")
    assert r.status_code == 403, query
    assert "insufficient_scope" in r.json()["issue"][0]["diagnostics"]
    assert "entry" not in r.json()


async def test_has_over_unreadable_type_is_refused_not_answered(gw: Gateway) -> None:
    gw.act_as(principal("system/Patient.rs system/Specimen.rs"))
    r = await gw.client.get("/fhir/Patient?_has:Consent:patient:status=inactive")
    assert r.status_code == 403
    r = await gw.client.get("/fhir/Patient?_has:Consent:patient:status=inactive&_summary=count")
    assert r.status_code == 403


async def test_wildcards_only_reach_readable_types(gw: Gateway) -> None:
    gw.act_as(principal(SPECIMENS_ONLY))
    r = await gw.client.get("/fhir/Specimen?_id=s2&_include=*&_revinclude=*")
    assert r.status_code == 200
    included = [e["resource"]["resourceType"] for e in r.json()["entry"] if e["search"]["mode"] == "include"]
    assert included == ["Specimen"]


async def test_batch_get_search_is_gated_like_the_search(gw: Gateway) -> None:
    gw.act_as(principal(SPECIMENS_ONLY))
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Consent?status=active"}},
        {"request": {"method": "GET", "url": "Specimen?_revinclude=Consent:data"}},
    ]}
    r = await gw.client.post("/fhir", json=batch, headers={"Content-Type": "application/fhir+json"})
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["403", "403"]


@pytest.mark.parametrize(("query", "expected"), [
    ("Specimen", ["s1", "s2"]),
    ("Specimen?subject=Patient/p2", []),
    ("Specimen?patient=p3", []),
    ("Specimen?subject:Patient.name=smith", []),
    ("Specimen?subject:Patient.identifier=urn:mrn|M1", ["s1", "s2"]),
    ("Specimen?_id=s3,s4,s5", []),
    ("Patient", ["p1"]),
    ("Patient?_id=p2", []),
    ("Patient?_has:Specimen:subject:status=unavailable", []),
    ("Patient?_has:Specimen:subject:status=available", ["p1"]),
])
async def test_patient_token_sees_only_its_compartment(gw: Gateway, query: str, expected: list[str]) -> None:
    gw.act_as(principal(PATIENT_P1, "p1"))
    assert sorted(await gw.ids(query)) == expected


async def test_patient_token_includes_and_counts_only_its_compartment(gw: Gateway) -> None:
    gw.act_as(principal(PATIENT_P1, "p1"))
    r = (await gw.client.get("/fhir/Specimen?_include=Specimen:subject&_total=accurate&_count=1")).json()
    assert r["total"] == 2
    assert [e["resource"]["id"] for e in r["entry"] if e["search"]["mode"] == "include"] == ["p1"]
    r = (await gw.client.get("/fhir/Patient?_revinclude=Specimen:subject&_id=p1,p2,p3")).json()
    assert sorted(e["resource"]["id"] for e in r["entry"]) == ["p1", "s1", "s2"]
    for query in ("Specimen?_summary=count", "Specimen?_count=0", "Specimen?status=available&_summary=count"):
        assert (await gw.client.get(f"/fhir/{query}")).json()["total"] == 2, query
    assert (await gw.client.get("/fhir/Specimen?subject=Patient/p2&_summary=count")).json()["total"] == 0
    r = await gw.client.get("/fhir/Specimen?_include=Specimen:subject&_revinclude=Consent:patient")
    assert r.status_code == 403
