"""What goes into the files (both engines): the same lines every time, `_since`, `_typeFilter`,
`_elements`, Group and Patient scope, size splitting — and only what the principal may see,
as many lines per type as a search by the same principal counts."""

from __future__ import annotations

import orjson
import pytest

from gateway.fhir.instant import now_us, to_instant
from tests.access.corpus import ALL, MRN, SUBJECTS, consent
from tests.bulk.conftest import TOKEN, Bulk, principal

EXTERNAL_VISIBLE = {"S01", "S02", "S06", "S11", "S12"}
"""Subjects whose data a collaborator may receive (tests/access/test_consent.py, issue 8)."""


def ids(lines: list[bytes]) -> list[str]:
    return [orjson.loads(line)["id"] for line in lines]


async def search_total(bulk: Bulk, type_: str) -> int:
    r = await bulk.http.get(f"/fhir/{type_}", params={"_total": "accurate", "_count": "1"}, headers=TOKEN)
    assert r.status_code == 200, r.text
    return r.json()["total"]


async def test_same_data_exported_twice_gives_the_same_lines(bulk: Bulk) -> None:
    first = await bulk.lines(await bulk.export())
    second = await bulk.lines(await bulk.export())
    assert first == second
    assert all(ids(lines) == sorted(ids(lines)) for lines in first.values())


@pytest.mark.parametrize("who", [principal("internal"), principal("external")], ids=["internal", "external"])
async def test_line_count_per_type_equals_the_search_total(bulk: Bulk, who) -> None:
    bulk.who = who
    manifest = await bulk.export()
    counts: dict[str, int] = {}
    for item in manifest["output"]:
        counts[item["type"]] = counts.get(item["type"], 0) + item["count"]
    for type_ in ("Patient", "Specimen", "Consent", "Group", "ResearchStudy"):
        assert counts.get(type_, 0) == await search_total(bulk, type_), type_


async def test_external_export_is_consent_filtered_and_pseudonymised(bulk: Bulk) -> None:
    bulk.who = principal("external")
    lines = await bulk.lines(await bulk.export())
    assert {i.removeprefix("SP") for i in ids(lines["Specimen"])} == EXTERNAL_VISIBLE
    blob = b"\n".join(line for group in lines.values() for line in group)
    for secret in (MRN.encode(), b"MGH-", b"F1/R2/B3/A4", b"storage-location"):
        assert secret not in blob
    assert all(b"PSEUDED" in line or b"REDACTED" in line for line in lines["Specimen"])


async def test_since_exports_only_what_changed_after_it(bulk: Bulk) -> None:
    everything = await bulk.lines(await bulk.export(params={"_type": "Specimen"}))
    assert len(everything["Specimen"]) == len(SUBJECTS)
    since = to_instant(now_us())
    store = bulk.app.state.services.store
    changed = orjson.loads(everything["Specimen"][0])
    changed["status"] = "unavailable"
    await store.put_many([changed])
    after = await bulk.lines(await bulk.export(params={"_type": "Specimen", "_since": since}))
    assert ids(after["Specimen"]) == [changed["id"]]
    assert orjson.loads(after["Specimen"][0])["status"] == "unavailable"


async def test_since_export_excludes_a_subject_withdrawn_no_further_use(bulk: Bulk) -> None:
    since = to_instant(now_us())
    store = bulk.app.state.services.store
    specimens = [orjson.loads(line) for line in (await bulk.lines(await bulk.export(
        params={"_type": "Specimen"})))["Specimen"]]
    await store.put_many([{**s, "status": "unavailable"} for s in specimens if s["id"] in ("SPS01", "SPS02")])
    await store.put_many([consent("C01w", "S01", "WITHDRAWN", ALL, signed="2025-01-01",
                                  withdrawal=("NO_FURTHER_USE", "2025-01-02"))])
    bulk.who = principal("external")
    after = await bulk.lines(await bulk.export(params={"_type": "Specimen", "_since": since}))
    assert ids(after["Specimen"]) == ["SPS02"]


async def test_type_filter_keeps_matching_resources_only(bulk: Bulk) -> None:
    store = bulk.app.state.services.store
    lines = await bulk.lines(await bulk.export(params={"_type": "Specimen"}))
    first = orjson.loads(lines["Specimen"][0])
    await store.put_many([{**first, "status": "unavailable"}])
    filtered = await bulk.lines(await bulk.export(params={"_typeFilter": "Specimen?status=unavailable"}))
    assert ids(filtered["Specimen"]) == [first["id"]]
    assert len(filtered["Patient"]) == len(SUBJECTS)  # other types are not filtered
    either = await bulk.lines(await bulk.export(
        params=[("_type", "Specimen"), ("_typeFilter", "Specimen?status=unavailable,Specimen?_id=SPS05")]))
    assert sorted(ids(either["Specimen"])) == sorted({first["id"], "SPS05"})


async def test_elements_subsets_and_marks_lines(bulk: Bulk) -> None:
    lines = await bulk.lines(await bulk.export(params={"_type": "Specimen,Patient", "_elements": "Specimen.status"}))
    specimen = orjson.loads(lines["Specimen"][0])
    assert set(specimen) == {"resourceType", "id", "meta", "status"}
    assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
            "display": "subsetted"} in specimen["meta"]["tag"]
    assert "identifier" in orjson.loads(lines["Patient"][0])  # qualified with another type: untouched


async def test_group_export_has_the_cohorts_members_only(bulk: Bulk) -> None:
    store = bulk.app.state.services.store
    await store.put_many([{"resourceType": "Group", "id": "small", "type": "person", "actual": True, "member": [
        {"entity": {"reference": "Patient/S03"}}, {"entity": {"reference": "Patient/S04"}},
        {"entity": {"reference": "Patient/S05"}, "inactive": True}]}])
    manifest = await bulk.export("/fhir/Group/small/$export")
    lines = await bulk.lines(manifest)
    assert set(lines) == {"Patient", "Specimen", "Consent"}
    assert ids(lines["Patient"]) == ["S03", "S04"]
    assert ids(lines["Specimen"]) == ["SPS03", "SPS04"]
    assert ids(lines["Consent"]) == ["C03", "C04"]
    assert manifest["request"] == "http://testserver/fhir/Group/small/$export"


async def test_patient_export_covers_every_subject_and_no_other_data(bulk: Bulk) -> None:
    lines = await bulk.lines(await bulk.export("/fhir/Patient/$export"))
    assert set(lines) == {"Patient", "Specimen", "Consent"}
    assert len(lines["Patient"]) == len(SUBJECTS)


async def test_files_are_split_by_size_without_losing_a_line(bulk: Bulk) -> None:
    whole = await bulk.lines(await bulk.export(params={"_type": "Specimen"}))
    bulk.app.state.exports.config.file_max_bytes = 2000
    bulk.app.state.exports.config.page_size = 5
    manifest = await bulk.export(params={"_type": "Specimen"})
    assert len(manifest["output"]) > 2
    assert all(item["type"] == "Specimen" for item in manifest["output"])
    assert await bulk.lines(manifest) == whole
