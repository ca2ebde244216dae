"""The CapabilityStatement declares exactly the search parameters that work: every declared one
is accepted under `handling=strict`, every R4 one left out is refused (both engines)."""

from __future__ import annotations

from urllib.parse import quote

from gateway.fhir.definitions import search_parameters
from gateway.served import STORED_TYPES

from .conftest import Gateway

SAMPLE = {"token": "x|y", "string": "x", "date": "ge2020-01-01", "reference": "Patient/p1", "quantity": "gt1",
          "number": "1", "uri": "http://example.org/x", "composite": "x$y", "special": "x"}
STRICT = {"prefer": "handling=strict"}


async def _statement(gw: Gateway) -> dict[str, dict]:
    cap = (await gw.client.get("/fhir/metadata")).json()
    return {r["type"]: r for r in cap["rest"][0]["resource"]}


async def test_every_declared_parameter_and_include_works(gw: Gateway) -> None:
    resources = await _statement(gw)
    for type_, resource in resources.items():
        assert {"code": "search-type"} in resource["interaction"]
        for param in resource.get("searchParam", []):
            assert param["definition"] and param["documentation"]
            query = f"{type_}?{param['name']}={quote(SAMPLE[param['type']])}"
            r = await gw.client.get(f"/fhir/{query}", headers=STRICT)
            assert r.status_code == 200, (query, r.text)
        for name, values in (("_include", resource.get("searchInclude", [])),
                             ("_revinclude", resource.get("searchRevInclude", []))):
            for value in values:
                r = await gw.client.get(f"/fhir/{type_}?{name}={value}", headers=STRICT)
                assert r.status_code == 200, (type_, name, value, r.text)


async def test_nothing_is_declared_that_fails(gw: Gateway) -> None:
    resources = await _statement(gw)
    refused = 0
    for definition in search_parameters():
        for type_ in definition["base"]:
            if type_ not in STORED_TYPES:
                continue
            declared = {p["name"] for p in resources[type_].get("searchParam", [])}
            if definition["code"] in declared:
                continue
            r = await gw.client.get(f"/fhir/{type_}?{definition['code']}={quote(SAMPLE[definition['type']])}",
                                    headers=STRICT)
            assert r.status_code == 400, (type_, definition["code"])
            refused += 1
    assert refused > 0
    for type_ in STORED_TYPES:
        declared = {p["name"] for p in resources[type_].get("searchParam", [])}
        assert {"_id", "_lastUpdated", "_tag", "_profile", "_security"} <= declared


async def test_system_search_declares_exactly_the_parameters_that_work_across_types(gw: Gateway) -> None:
    rest = (await gw.client.get("/fhir/metadata")).json()["rest"][0]
    assert {"code": "search-system"} in rest["interaction"]
    declared = {p["name"]: p for p in rest["searchParam"]}
    assert {"_id", "_lastUpdated", "_tag", "_profile", "_security"} <= set(declared)
    for name, param in declared.items():
        assert param["definition"] and param["documentation"]
        r = await gw.client.get(f"/fhir?{name}={quote(SAMPLE[param['type']])}", headers=STRICT)
        assert r.status_code == 200, (name, r.text)
    refused = set()
    for definition in search_parameters():
        code = definition["code"]
        if code not in declared and code not in refused:
            r = await gw.client.get(f"/fhir?{code}={quote(SAMPLE[definition['type']])}", headers=STRICT)
            assert r.status_code == 400, code
            refused.add(code)
    assert {"identifier", "patient", "status"} <= refused
