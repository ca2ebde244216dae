"""The conformance resources are well formed: canonical URLs, file names, snapshots, R4 base models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from gateway.profiles import PROFILES_DIR

BASE = "https://biobank.massgeneral.org/fhir"
FILES = sorted(PROFILES_DIR.glob("*.json"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_file_named_after_type_and_id_and_parses_as_r4(path: Path) -> None:
    resource = json.loads(path.read_text(encoding="utf-8"))
    assert path.name == f"{resource['resourceType']}-{resource['id']}.json"
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    if not resource["url"].startswith("https://fhir.bbmri-eric.eu/"):  # MIABIS reproductions keep their canonical
        assert resource["url"] == f"{BASE}/{resource['resourceType']}/{resource['id']}"


@pytest.mark.parametrize("path", sorted(PROFILES_DIR.glob("StructureDefinition-*.json")), ids=lambda p: p.stem)
def test_structure_definition_has_snapshot_covering_differential(path: Path) -> None:
    sd = json.loads(path.read_text(encoding="utf-8"))
    assert sd["fhirVersion"] == "4.0.1" and sd["derivation"] == "constraint"
    snapshot = {e["id"] for e in sd["snapshot"]["element"]}
    assert {e["id"] for e in sd["differential"]["element"]} <= snapshot
    assert sd["snapshot"]["element"][0]["id"] == sd["type"]
