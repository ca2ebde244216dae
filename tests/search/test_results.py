"""What a searchset Bundle carries: sort order, pages and links, includes, _summary, _elements,
_total, lenient and strict handling, POST _search and batch GET searches (both engines)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Gateway, point_statements

STRICT = {"prefer": "handling=strict"}


async def _bundle(gw: Gateway, query: str, **headers: str) -> dict[str, Any]:
    r = await gw.client.get(f"/fhir/{query}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def _mode(bundle: dict[str, Any], mode: str) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]
            if e["search"]["mode"] == mode]


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((link["url"] for link in bundle.get("link", []) if link["relation"] == relation), None)


async def _walk(gw: Gateway, query: str) -> list[str]:
    """Every match id, following `next` links."""
    out: list[str] = []
    url: str | None = f"http://testserver/fhir/{query}"
    while url:
        bundle = (await gw.client.get(url)).json()
        out += [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match"]
        url = _link(bundle, "next")
    return out


@pytest.mark.parametrize(("sort", "expected"), [
    ("collected", ["s4", "s3", "s2", "s1", "s5"]),
    ("-collected", ["s5", "s2", "s1", "s3", "s4"]),
    ("status,-collected", ["s2", "s1", "s4", "s5", "s3"]),
    ("-_id", ["s5", "s4", "s3", "s2", "s1"]),
    ("accession,_id", ["s1", "s2", "s3", "s4", "s5"]),
    ("-available-quantity", ["s5", "s3", "s1", "s2", "s4"]),
])
async def test_sort_orders_by_several_keys_and_pages_keep_the_order(gw: Gateway, sort: str, expected: list[str]
                                                                     ) -> None:
    assert await gw.ids(f"Specimen?_sort={sort}") == expected
    assert await _walk(gw, f"Specimen?_sort={sort}&_count=2") == expected


async def test_links_are_built_from_the_base_url_and_previous_goes_back(gw: Gateway) -> None:
    first = await _bundle(gw, "Specimen?_sort=_id&_count=2")
    assert _link(first, "self") == "http://testserver/fhir/Specimen?_sort=_id&_count=2"
    assert _link(first, "first") == _link(first, "self")
    assert _link(first, "previous") is None
    second = (await gw.client.get(_link(first, "next"))).json()
    assert [e["resource"]["id"] for e in second["entry"]] == ["s3", "s4"]
    assert "_page=" in _link(second, "self")
    back = (await gw.client.get(_link(second, "previous"))).json()
    assert [e["resource"]["id"] for e in back["entry"]] == ["s1", "s2"]
    assert _link(back, "previous") is None
    last = (await gw.client.get(_link(second, "next"))).json()
    assert [e["resource"]["id"] for e in last["entry"]] == ["s5"]
    assert _link(last, "next") is None


async def test_include_and_revinclude_with_iterate_and_wildcards(gw: Gateway) -> None:
    b = await _bundle(gw, "Specimen?_id=s2&_include=Specimen:subject&_include=Specimen:parent")
    assert _mode(b, "match") == ["Specimen/s2"]
    assert sorted(_mode(b, "include")) == ["Patient/p1", "Specimen/s1"]
    b = await _bundle(gw, "Specimen?_id=s2&_include=Specimen:subject:Patient&_include:iterate=Patient:organization")
    assert sorted(_mode(b, "include")) == ["Organization/o1", "Patient/p1"]
    b = await _bundle(gw, "Specimen?_id=s2&_include=*")
    assert sorted(_mode(b, "include")) == ["Patient/p1", "Specimen/s1"]
    b = await _bundle(gw, "Patient?_id=p1&_revinclude=ResearchSubject:individual"
                          "&_include:iterate=ResearchSubject:study")
    assert sorted(_mode(b, "include")) == ["ResearchStudy/st1", "ResearchSubject/rs1"]
    b = await _bundle(gw, "Patient?_id=p2&_revinclude=*")
    assert sorted(_mode(b, "include")) == ["Consent/c2", "ResearchSubject/rs2", "Specimen/s3", "Specimen/s5"]
    b = await _bundle(gw, "ResearchStudy?_id=st1&_revinclude=ResearchSubject:study"
                          "&_include:iterate=ResearchSubject:individual&_revinclude:iterate=Consent:patient")
    assert sorted(_mode(b, "include")) == ["Consent/c1", "Consent/c2", "Patient/p1", "Patient/p2",
                                           "ResearchSubject/rs1", "ResearchSubject/rs2"]
    assert b["total"] == 1


async def test_an_include_round_is_one_statement_listing_each_resource_once_in_spec_order(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """All the specs and target types of an include round go in one statement (include.py); a resource two
    specs reach is included once, and the includes come in the order of the specs."""
    statements = point_statements(gw, monkeypatch)
    b = await _bundle(gw, "Specimen?_id=s2&_include=Specimen:parent&_include=Specimen:subject&_include=Specimen:*")
    assert _mode(b, "include") == ["Specimen/s1", "Patient/p1"]
    assert len(statements) == 1
    b = await _bundle(gw, "Specimen?_id=s2&_include=Specimen:subject&_include=Specimen:parent")
    assert _mode(b, "include") == ["Patient/p1", "Specimen/s1"]
    statements.clear()
    b = await _bundle(gw, "Specimen?_id=s2&_include=Specimen:subject:Patient&_include:iterate=Patient:organization")
    assert _mode(b, "include") == ["Patient/p1", "Organization/o1"]
    assert len(statements) == 2  # a round for the specimen, one for what it reached


async def test_summary_elements_and_total(gw: Gateway) -> None:
    count = await _bundle(gw, "Specimen?status=available&_summary=count")
    assert count["total"] == 3 and not count["entry"]
    assert (await _bundle(gw, "Specimen?_count=0"))["total"] == 5
    paged = await _bundle(gw, "Specimen?_count=1&_total=accurate")
    assert paged["total"] == 5 and len(paged["entry"]) == 1
    assert "total" not in await _bundle(gw, "Specimen?_count=1&_total=none")
    summary = (await _bundle(gw, "Specimen?_id=s1&_summary=true"))["entry"][0]["resource"]
    assert "collection" not in summary and "text" not in summary and summary["status"] == "available"
    assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"} \
        in summary["meta"]["tag"]
    data = (await _bundle(gw, "Specimen?_id=s1&_summary=data"))["entry"][0]["resource"]
    assert "text" not in data and "collection" in data
    elements = (await _bundle(gw, "Specimen?_id=s1&_elements=status,collection"))["entry"][0]["resource"]
    assert set(elements) == {"resourceType", "id", "meta", "status", "collection"}


async def test_lenient_ignores_and_reports_strict_refuses(gw: Gateway) -> None:
    for query in ("Specimen?colour=red", "Specimen?collected=yesterday", "Specimen?status:exact=available",
                  "Specimen?_sort=colour", "Specimen?_include=Specimen:colour", "Specimen?_summary=maybe"):
        lenient = await _bundle(gw, query)
        outcome = [e for e in lenient["entry"] if e["search"]["mode"] == "outcome"]
        assert len(outcome) == 1, query
        assert outcome[0]["resource"]["issue"][0]["severity"] == "warning"
        assert len(_mode(lenient, "match")) == 5, query
        assert "colour" not in _link(lenient, "self")
        strict = await gw.client.get(f"/fhir/{query}", headers=STRICT)
        assert strict.status_code == 400, query
        assert strict.json()["resourceType"] == "OperationOutcome"


async def test_post_search_equals_get(gw: Gateway) -> None:
    get = await _bundle(gw, "Specimen?status=available&type=119297000&_include=Specimen:subject")
    post = await gw.client.post("/fhir/Specimen/_search", data={"status": "available", "_include": "Specimen:subject"},
                                params={"type": "119297000"})
    assert post.status_code == 200
    assert post.json()["entry"] == get["entry"] and post.json()["total"] == get["total"]


async def test_batch_get_entries_can_search(gw: Gateway) -> None:
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Specimen?status=unavailable"}},
        {"request": {"method": "GET", "url": "Patient/p1"}},
    ]}
    r = await gw.client.post("/fhir", json=batch, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200
    searchset, read = r.json()["entry"]
    assert searchset["response"]["status"] == "200 OK"
    assert searchset["resource"]["type"] == "searchset"
    assert [e["resource"]["id"] for e in searchset["resource"]["entry"]] == ["s3"]
    assert read["resource"]["id"] == "p1"


async def test_unknown_type_is_404_and_bad_page_token_400(gw: Gateway) -> None:
    assert (await gw.client.get("/fhir/Spaceship?name=x")).status_code == 404
    assert (await gw.client.get("/fhir/Specimen?_page=garbage")).status_code == 400
