"""Loads over time: changed rows make new versions, `--since`, parents from an earlier
load, incremental exports, and the encoding and header rules of the contract."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from gateway.ingest import load
from tests.ingest.conftest import read

HEADER = ("specimen_id,subject_id,mrn,parent_specimen_id,specimen_type,collection_datetime,quantity_value,"
          "quantity_unit,status,updated_at\n")


def export(folder: Path, specimens: str = "", encoding: str = "utf-8", **others: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    if specimens:
        (folder / "specimens.csv").write_bytes((HEADER + specimens).encode(encoding))
    for name, text in others.items():
        (folder / f"{name}.csv").write_bytes(text.encode(encoding))
    return str(folder)


WB = "BB-1-01,S1,MGH-0000001,,WB,2020-01-01T08:00:00,10,mL,AVAILABLE,2020-01-02T00:00:00\n"
PLS = "BB-1-02,S1,,BB-1-01,PLS,,1,mL,AVAILABLE,2020-01-03T00:00:00\n"


async def test_a_changed_row_creates_a_new_version_of_the_same_resource(tmp_path, sqlite_store):
    await load(sqlite_store, export(tmp_path / "v1", WB + PLS))
    changed = PLS.replace("1,mL,AVAILABLE,2020-01-03", "0.5,mL,RESERVED,2020-02-01")
    report = await load(sqlite_store, export(tmp_path / "v2", WB + changed))
    counts = report.record_sets["specimens"]
    assert (counts.read, counts.updated, counts.unchanged, counts.created) == (2, 1, 1, 0)
    stored = await sqlite_store.read("Specimen", "BB-1-02")
    assert stored.version == 2
    assert stored.json()["container"][0]["specimenQuantity"]["value"] == 0.5


async def test_since_loads_only_rows_updated_after_it(tmp_path, sqlite_store):
    await load(sqlite_store, export(tmp_path / "v1", WB + PLS))
    wb_changed_long_ago = WB.replace("10,mL", "9,mL")
    pls_changed = PLS.replace("1,mL,AVAILABLE,2020-01-03", "0.5,mL,RESERVED,2020-02-01")
    report = await load(sqlite_store, export(tmp_path / "v2", wb_changed_long_ago + pls_changed),
                        since=datetime(2020, 1, 15))
    counts = report.record_sets["specimens"]
    assert (counts.read, counts.skipped, counts.updated) == (1, 1, 1) and report.reconciled
    assert (await sqlite_store.read("Specimen", "BB-1-01")).version == 1
    assert (await sqlite_store.read("Specimen", "BB-1-02")).version == 2


async def test_a_parent_from_an_earlier_load_resolves(tmp_path, sqlite_store):
    await load(sqlite_store, export(tmp_path / "first", WB))
    report = await load(sqlite_store, export(tmp_path / "second", PLS))
    assert report.record_sets["specimens"].created == 1 and not report.rejects
    child = await read(sqlite_store, "Specimen", "BB-1-02")
    assert child["collection"]["collectedDateTime"] == "2020-01-01T08:00:00-05:00"  # inherited from the store
    assert (await read(sqlite_store, "Patient", "S1"))["identifier"][1]["value"] == "MGH-0000001"  # MRN kept


async def test_an_unknown_parent_is_rejected_only_after_the_whole_load(tmp_path, sqlite_store):
    report = await load(sqlite_store, export(tmp_path / "e", PLS))
    assert [r.reason for r in report.rejects] == ["unknown parent specimen BB-1-01"]


async def test_windows_1252_is_read_and_reported(tmp_path, sqlite_store):
    row = "BB-2-01,S2,,,SAL,2020-01-01,2,mL,AVAILABLE,2020-01-02\n"
    studies = ("study_id,title,status,site,updated_at\n"
               "TRC-2020-001,Étude of café workers,ACTIVE,Translational Research Center,2020-01-01\n")
    report = await load(sqlite_store, export(tmp_path / "e", row, encoding="cp1252", studies=studies))
    assert any("studies.csv" in w and "Windows-1252" in w for w in report.warnings)
    assert (await read(sqlite_store, "ResearchStudy", "TRC-2020-001"))["title"] == "Étude of café workers"


async def test_a_file_without_header_is_refused_with_a_reason(tmp_path, sqlite_store):
    folder = tmp_path / "e"
    folder.mkdir()
    (folder / "specimens.csv").write_text(WB + PLS)
    report = await load(sqlite_store, str(folder))
    assert [(r.record_set, r.line, r.reason) for r in report.rejects] == [
        ("specimens", 1, "header row missing or without specimen_id: file not loaded")]
    assert report.record_sets["specimens"].read == 0 and report.reconciled


async def test_an_unreadable_ndjson_line_is_rejected_and_the_rest_loads(tmp_path, sqlite_store):
    folder = tmp_path / "e"
    folder.mkdir()
    (folder / "studies.ndjson").write_text(
        '{"study_id": "TRC-2020-002", "title": "A", "status": "ACTIVE", "updated_at": "2020-01-01"}\n'
        '{"study_id": "TRC-2020-003", "title": \n'
        '["not", "an", "object"]\n')
    report = await load(sqlite_store, str(folder))
    assert [(r.line, r.reason.split(":")[0]) for r in report.rejects] == [(2, "invalid JSON"), (3, "not a JSON object")]
    assert report.record_sets["studies"].created == 1


async def test_the_report_json_has_the_documented_shape(tmp_path, sqlite_store):
    import orjson

    await load(sqlite_store, export(tmp_path / "e", WB + PLS), report_path=tmp_path / "report.json")
    body = orjson.loads((tmp_path / "report.json").read_bytes())
    assert set(body["record_sets"]["specimens"]) >= {"read", "created", "updated", "unchanged", "rejected"}
    assert body["rejects"] == [] and isinstance(body["warnings"], list)
