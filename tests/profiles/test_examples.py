"""Every good example is valid; every bad one breaks exactly the one rule its sidecar names."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.profiles import ProfileValidator

from .conftest import bad_paths, good_paths, load


@pytest.mark.parametrize("path", good_paths(), ids=lambda p: p.stem)
def test_good_example_has_no_issues(validator: ProfileValidator, path: Path) -> None:
    assert validator.validate(load(path)) == []


@pytest.mark.parametrize("path", bad_paths(), ids=lambda p: p.stem)
def test_bad_example_gives_exactly_the_expected_error(validator: ProfileValidator, path: Path) -> None:
    expected = load(path.with_suffix(".expected.json"))
    issues = validator.validate(load(path))
    assert [(i.severity, i.code, i.expression) for i in issues] == [
        ("error", expected["code"], (expected["expression"],))
    ], [i.diagnostics for i in issues]
    assert issues[0].diagnostics


def test_every_profile_has_good_and_bad_examples(validator: ProfileValidator) -> None:
    claimed = {url for p in good_paths() for url in validator.profiles_for(load(p))}
    broken = {url for p in bad_paths() for url in validator.profiles_for(load(p))}
    assert set(validator.profile_urls) == claimed == broken


def test_explicit_profile_parameter(validator: ProfileValidator) -> None:
    patient = load(good_paths()[0].parent / "patient.json")
    patient.pop("meta")
    assert validator.validate(patient) == []
    patient["name"] = [{"family": "Doe"}]
    url = "https://biobank.massgeneral.org/fhir/StructureDefinition/BiobankPatient"
    assert [i.expression for i in validator.validate(patient, profile=url)] == [("Patient.name",)]
    unknown = validator.validate(patient, profile="https://example.org/StructureDefinition/Nope")
    assert [(i.severity, i.code) for i in unknown] == [("error", "not-found")]


def test_profile_for_another_type_is_an_error(validator: ProfileValidator) -> None:
    patient = load(good_paths()[0].parent / "patient.json")
    url = "https://biobank.massgeneral.org/fhir/StructureDefinition/BiobankSpecimen"
    assert [i.code for i in validator.validate(patient, profile=url)] == ["invalid"]


def test_base_required_binding_without_profile(validator: ProfileValidator) -> None:
    issues = validator.validate({"resourceType": "Group", "type": "robot", "actual": True})
    assert [(i.code, i.expression) for i in issues] == [("code-invalid", ("Group.type",))]


def test_conformance_resources_are_all_served(validator: ProfileValidator) -> None:
    resources = validator.conformance_resources()
    kinds = {r["resourceType"] for r in resources}
    assert {
        "StructureDefinition",
        "ValueSet",
        "CodeSystem",
        "SearchParameter",
        "OperationDefinition",
        "ImplementationGuide",
    } <= kinds
    index = next(r for r in resources if r["resourceType"] == "ImplementationGuide")
    listed = {e["reference"]["reference"] for e in index["definition"]["resource"]}
    assert listed == {f"{r['resourceType']}/{r['id']}" for r in resources if r["resourceType"] != "ImplementationGuide"}
