"""validate_files reads JSON, Bundle and NDJSON input and reports per resource."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.profiles import ProfileValidator
from gateway.profiles.cli import validate_files

from .conftest import EXAMPLES, load


def test_single_json_files(validator: ProfileValidator) -> None:
    good = EXAMPLES / "good" / "specimen-whole-blood.json"
    bad = EXAMPLES / "bad" / "specimen-unknown-status.json"
    errors, reports = validate_files([good, bad], validator)
    assert errors == 1
    assert [r["valid"] for r in reports] == [True, False]
    assert reports[1]["outcome"]["resourceType"] == "OperationOutcome"
    assert reports[1]["outcome"]["issue"][0]["expression"] == ["Specimen.status"]
    assert reports[0]["index"] is None and reports[0]["id"] == "BB-0012345-01"


def test_bundle_and_ndjson(tmp_path: Path, validator: ProfileValidator) -> None:
    good = load(EXAMPLES / "good" / "patient.json")
    bad = load(EXAMPLES / "bad" / "patient-with-name.json")
    bundle = tmp_path / "bundle.json"
    bundle.write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": good}, {"resource": bad}, {"fullUrl": "urn:uuid:x"}],
            }
        )
    )
    ndjson = tmp_path / "patients.ndjson"
    ndjson.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n{not json\n")
    errors, reports = validate_files([bundle, ndjson], validator)
    assert [(Path(r["file"]).name, r["index"], r["valid"]) for r in reports] == [
        ("bundle.json", 0, True),
        ("bundle.json", 1, False),
        ("bundle.json", 2, False),
        ("patients.ndjson", 1, True),
        ("patients.ndjson", 3, False),
        ("patients.ndjson", 4, False),
    ]
    assert errors == 4
    assert reports[-1]["outcome"]["issue"][0]["severity"] == "fatal"


def test_missing_file_is_reported_not_raised(tmp_path: Path, validator: ProfileValidator) -> None:
    errors, reports = validate_files([tmp_path / "nope.json"], validator)
    assert errors == 1 and reports[0]["outcome"]["issue"][0]["code"] == "not-found"
