"""The synthetic export: deterministic per seed, exactly N subjects, realistic shape, and its
documented dirty rows are exactly what a load rejects."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from gateway.ingest import load, write_demo_export
from gateway.ingest.demo import REFERENCE

FILES = ("specimens.csv", "consents.csv", "studies.csv", "participants.csv")


def rows(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / name).open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path):
    first = write_demo_export(tmp_path / "a", 120, seed=7)
    second = write_demo_export(tmp_path / "b", 120, seed=7)
    other = write_demo_export(tmp_path / "c", 120, seed=8)
    assert first == second
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "specimens.csv").read_bytes() != (tmp_path / "c" / "specimens.csv").read_bytes()
    assert other["subjects"] == 120


def test_exactly_n_subjects_with_a_realistic_biobank(tmp_path):
    info = write_demo_export(tmp_path, 500, seed=1)
    specimens, consents = rows(tmp_path, "specimens.csv"), rows(tmp_path, "consents.csv")
    subjects = {r["subject_id"] for name in ("specimens.csv", "consents.csv", "participants.csv")
                for r in rows(tmp_path, name) if r["subject_id"]}
    assert len(subjects) == 500 == info["subjects"]
    assert 4.0 <= len(specimens) / 500 <= 6.0
    types = Counter(r["specimen_type"] for r in specimens)
    assert types["WB"] > 400 and types["PLS"] > types["WB"] and types["DNA"] > 300
    dna = [r for r in specimens if r["specimen_type"] == "DNA" and r["parent_specimen_id"]]
    assert dna, "DNA is derived from a parent specimen"
    genotyped = {r["subject_id"] for r in specimens if r["genotyped"] == "Y"}
    assert 0.17 <= len(genotyped) / 500 <= 0.23
    assert {r["genotyping_platform"] for r in specimens if r["genotyped"] == "Y"} == {"MEGA", "GSA-24v3"}
    assert all(r["mrn"].startswith("MGH-") and len(r["mrn"]) == 11 for r in specimens if r["mrn"])
    statuses = Counter(r["status"] for r in consents)
    assert {"ACTIVE", "SUPERSEDED", "WITHDRAWN", "EXPIRED"} <= set(statuses)
    scopes = {r["withdrawal_scope"] for r in consents if r["status"] == "WITHDRAWN" and r["withdrawn_date"]
              and not r["consent_id"].startswith("C-DIRTY")}
    assert scopes == {"NO_FURTHER_USE", "DESTROY", "NO_CONTACT"}
    studies = rows(tmp_path, "studies.csv")
    assert any(s["study_id"].startswith("BB-DIST-") for s in studies)
    assert {s["phase"] for s in studies if s["study_id"].startswith("TRC-")} & {"0", "2B"}
    assert any("/" in r["collection_datetime"] for r in specimens), "some legacy MM/DD/YYYY dates"
    assert all(r["collection_datetime"] < str(REFERENCE.year + 1) or "/" in r["collection_datetime"]
               or r["specimen_id"].startswith("BB-DIRTY") for r in specimens if r["collection_datetime"])


async def test_a_demo_load_rejects_exactly_the_documented_dirty_rows(tmp_path, sqlite_store):
    info = write_demo_export(tmp_path / "export", 300, seed=3)
    rules = {d["rule"] for d in info["dirty"]}
    assert {"duplicate-id", "unknown-parent", "unknown-specimen-type", "missing-collection-datetime",
            "future-collection-date", "bad-date", "negative-quantity", "withdrawn-without-date",
            "withdrawn-without-scope", "unknown-study", "unknown-consent"} <= rules
    report = await load(sqlite_store, str(tmp_path / "export"))
    assert report.reconciled
    assert Counter((r.record_set, r.record_id, r.line) for r in report.rejects) == \
        Counter((d["record_set"], d["record_id"], d["line"]) for d in info["dirty"])
    for name, counts in report.record_sets.items():
        assert counts.read == info["rows"][name]
    assert any("lims_batch" in w for w in report.warnings)
