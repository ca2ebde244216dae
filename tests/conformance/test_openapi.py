"""openapi.yaml is what the code generates, and says what /fhir/metadata says."""

from __future__ import annotations

from pathlib import Path

import yaml

from gateway.openapi import describe, render, surface

COMMITTED = Path(__file__).resolve().parents[2] / "openapi.yaml"


def test_committed_openapi_yaml_is_what_the_code_generates() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(), (
        "openapi.yaml is stale: regenerate it with `.venv/bin/python -m gateway.openapi > openapi.yaml` and commit it")


def test_every_declared_search_parameter_and_interaction_has_its_path() -> None:
    statement, routes = surface()
    document = describe(statement, routes)
    assert yaml.safe_load(yaml.safe_dump(document)) == document
    paths = document["paths"]
    for resource in statement["rest"][0]["resource"]:
        type_ = resource["type"]
        codes = {i["code"] for i in resource["interaction"]}
        if "read" in codes:
            assert "get" in paths[f"/fhir/{type_}/{{id}}"]
        if "search-type" in codes:
            names = {p["name"] for p in paths[f"/fhir/{type_}"]["get"].get("parameters", [])}
            assert {p["name"] for p in resource.get("searchParam", [])} <= names
        if "create" not in codes and f"/fhir/{type_}" in paths:
            assert "post" not in paths[f"/fhir/{type_}"]
    assert {"/healthz", "/readyz", "/fhir/metadata"} <= set(paths)


def test_every_operation_the_app_serves_is_declared_in_the_capability_statement() -> None:
    statement, routes = surface()
    rest = statement["rest"][0]
    declared = {("", o["name"].lstrip("$")) for o in rest.get("operation", [])}
    declared |= {(r["type"], o["name"].lstrip("$")) for r in rest["resource"] for o in r.get("operation", [])}
    served = {(route.path.split("/")[2] if route.path.count("/") > 2 else "", route.path.rsplit("/$", 1)[1])
              for route in routes if route.path.rsplit("/", 1)[-1].startswith("$")}
    owned = {r["type"] for r in rest["resource"] if any(i["code"] == "create" for i in r["interaction"])}
    served = {(t, op) for type_, op in served for t in (owned if type_ == "{type}" else {type_})}
    assert served <= declared, f"served but not declared: {sorted(served - declared)}"
