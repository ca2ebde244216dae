"""Kick-off: every parameter and every error a client can get at kick-off (both engines)."""

from __future__ import annotations

import pytest

from gateway.bulk.config import ExportSettings
from tests.bulk.conftest import KICK_OFF, TOKEN, Bulk, principal


def outcome_text(r) -> str:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    return " ".join(i["diagnostics"] for i in body["issue"])


@pytest.mark.parametrize("headers,missing", [
    ({"Accept": "application/json"}, "Accept"),
    ({"Accept": "*/*"}, "Accept"),
    ({"Prefer": "return=representation"}, "respond-async"),
])
async def test_kick_off_without_required_headers_is_400(bulk: Bulk, headers: dict, missing: str) -> None:
    r = await bulk.kick_off(headers=headers)
    assert r.status_code == 400
    assert missing in outcome_text(r)


async def test_kick_off_answers_202_with_content_location(bulk: Bulk) -> None:
    r = await bulk.kick_off()
    assert r.status_code == 202
    assert r.headers["content-location"].startswith("http://testserver/fhir/$export-status/")


@pytest.mark.parametrize("fmt", ["application/fhir+ndjson", "application/ndjson", "ndjson"])
async def test_output_formats_accepted(bulk: Bulk, fmt: str) -> None:
    manifest = await bulk.export(params={"_outputFormat": fmt, "_type": "Patient"})
    assert [o["type"] for o in manifest["output"]] == ["Patient"]


@pytest.mark.parametrize("params,param", [
    ({"_outputFormat": "text/csv"}, "_outputFormat"),
    ({"_type": "Specimen,Nonsense"}, "_type"),
    ({"_since": "last tuesday"}, "_since"),
    ({"_typeFilter": "Specimen"}, "_typeFilter"),
    ({"_typeFilter": "Patient?gender=female", "_type": "Specimen"}, "_typeFilter"),
    ({"_typeFilter": "Specimen?no-such-param=1"}, "no-such-param"),
    ({"_elements": "Specimen.status,1bad"}, "_elements"),
    ({"patient": "Patient/S01"}, "patient"),
])
async def test_bad_parameters_are_400(bulk: Bulk, params: dict, param: str) -> None:
    r = await bulk.kick_off(params=params)
    assert r.status_code == 400, r.text
    assert param in r.text


async def test_patient_export_refuses_types_outside_the_patient_compartment(bulk: Bulk) -> None:
    r = await bulk.kick_off("/fhir/Patient/$export", {"_type": "ResearchStudy"})
    assert r.status_code == 400
    assert "Patient compartment" in outcome_text(r)


async def test_include_associated_data_strict_is_400_lenient_is_reported(bulk: Bulk) -> None:
    strict = await bulk.kick_off(params={"includeAssociatedData": "LatestProvenanceResources"},
                                 headers={"Prefer": "respond-async, handling=strict"})
    assert strict.status_code == 400
    manifest = await bulk.export(params={"includeAssociatedData": "LatestProvenanceResources", "_type": "Patient"})
    assert [e["type"] for e in manifest["error"]] == ["OperationOutcome"]
    r = await bulk.http.get(manifest["error"][0]["url"], headers={**TOKEN, "Accept": "application/fhir+ndjson"})
    assert b"includeAssociatedData" in r.content and r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("path,scopes,status", [
    ("/fhir/$export", "user/*.rs", 403),
    ("/fhir/$export", "patient/*.rs", 403),
    ("/fhir/Group/cohort/$export", "user/*.rs", 403),
    ("/fhir/Patient/$export", "patient/*.rs", 403),
    ("/fhir/Patient/$export", "user/*.rs", 202),
    ("/fhir/$export", "system/Patient.rs", 202),
])
async def test_scopes_decide_at_kick_off(bulk: Bulk, path: str, scopes: str, status: int) -> None:
    bulk.who = principal(scopes=scopes)
    r = await bulk.kick_off(path)
    assert r.status_code == status, r.text
    if status == 403:
        assert "insufficient_scope" in r.headers["www-authenticate"]


async def test_named_type_without_scope_is_403(bulk: Bulk) -> None:
    bulk.who = principal(scopes="system/Patient.rs")
    r = await bulk.kick_off(params={"_type": "Patient,Specimen"})
    assert r.status_code == 403 and "Specimen" in outcome_text(r)


async def test_unknown_or_invisible_group_is_404(bulk: Bulk) -> None:
    assert (await bulk.kick_off("/fhir/Group/nope/$export")).status_code == 404
    bulk.who = principal(scopes="system/Specimen.rs system/Patient.rs")  # may not read Groups
    assert (await bulk.kick_off("/fhir/Group/cohort/$export", {"_type": "Specimen"})).status_code == 404


async def test_too_many_running_jobs_is_429(bulk: Bulk) -> None:
    await bulk.app.state.exports.dispatcher.stop()  # nothing runs: jobs stay accepted
    limit = ExportSettings().max_jobs_per_client
    for _ in range(limit):
        assert (await bulk.kick_off()).status_code == 202
    r = await bulk.kick_off()
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    bulk.who = principal(client="another-client")
    assert (await bulk.kick_off()).status_code == 202


async def test_post_kick_off_with_parameters(bulk: Bulk) -> None:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Specimen"},
        {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
        {"name": "patient", "valueReference": {"reference": "Patient/S01"}},
        {"name": "patient", "valueReference": {"reference": "Patient/S02"}}]}
    r = await bulk.kick_off("/fhir/Patient/$export", body=body)
    assert r.status_code == 202, r.text
    done = await bulk.wait(r.headers["content-location"])
    manifest = done.json()
    assert manifest["request"] == "http://testserver/fhir/Patient/$export"
    lines = await bulk.lines(manifest)
    assert sorted(line.split(b'"id":"')[1].split(b'"')[0] for line in lines["Specimen"]) == [b"SPS01", b"SPS02"]


async def test_kick_off_needs_a_token(bulk: Bulk) -> None:
    r = await bulk.http.get("/fhir/$export", headers=KICK_OFF)
    assert r.status_code == 401
