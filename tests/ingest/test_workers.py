"""A load on worker processes stores exactly what a load in one process stores: the same
report (every reject, in order, with file and line), the same resources and versions, and
the same search index rows as the store extracts itself (both engines). Jobs of three rows
make every order-dependent rule cross job boundaries: parents in other jobs and after their
children, inheritance from parents still in flight (rechecked by the loader), duplicates,
carried MRNs, cohorts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from gateway.cli import cli
from gateway.ingest import loader, write_demo_export
from gateway.ingest.report import LoadReport
from gateway.search.params import build_registry
from gateway.store import Store
from gateway.store.index import TABLES, indexer
from tests.ingest.conftest import MESSY, make_store


async def snapshot(store: Store) -> dict[str, Any]:
    """Current resources (content without version meta), the number of versions, every index row."""
    rows = await store.db.fetchall("SELECT type, id, version, content FROM resources")
    resources = {}
    for type_, id_, version, content in rows:
        body = orjson.loads(bytes(content))
        body["meta"].pop("versionId")
        body["meta"].pop("lastUpdated")
        resources[(type_, id_)] = (version, body)
    versions = await store.db.fetchone("SELECT count(*) FROM resource_versions")
    index = {name: sorted(map(tuple, await store.db.fetchall(f"SELECT * FROM {table.name}")), key=repr)
             for name, table in TABLES.items()}
    return {"resources": resources, "versions": versions, "index": index}


def outcome(report: LoadReport) -> dict[str, Any]:
    return {"counts": report.record_sets, "resources": report.resources, "rejects": report.rejects,
            "warnings": report.warnings, "provenance": report.provenance}


@pytest.mark.parametrize("store_kind", ["sqlite", "postgresql"])
async def test_workers_load_exactly_what_one_process_loads(store_kind, tmp_path, pg_databases, monkeypatch):
    demo = tmp_path / "demo"
    write_demo_export(demo, 150, seed=5)
    sources = [str(MESSY), str(demo), str(demo)]  # the second demo load changes nothing
    monkeypatch.setattr(loader, "JOB_ROWS", 3)  # rejects come out as rows resolve: in job order

    inline = await make_store(store_kind, tmp_path / "inline", pg_databases)
    own_index = Store(inline.db, hooks=[indexer(build_registry(), inline.dialect)])  # extracts rows itself
    inline_reports = [outcome(await loader.load(own_index, source, workers=0)) for source in sources]

    rechecked = []
    settle = loader.Load.settle

    def counting_settle(self: loader.Load, row: loader.Row) -> Any:
        prepared = settle(self, row)
        rechecked.append(prepared is not row.mapped.primary)
        return prepared

    monkeypatch.setattr(loader.Load, "settle", counting_settle)
    pooled = await make_store(store_kind, tmp_path / "pooled", pg_databases)
    pooled_reports = [outcome(await loader.load(pooled, source, workers=2)) for source in sources]

    try:
        assert pooled_reports == inline_reports
        assert await snapshot(pooled) == await snapshot(inline)
        assert any(rechecked), "no inherited value was guessed wrong: the recheck went untested"
    finally:
        await inline.close()
        await pooled.close()


def test_the_load_command_takes_a_worker_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_DATABASE_URL", f"sqlite:///{tmp_path}/gateway.db")
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GATEWAY_REDIS_URL", raising=False)
    reports = []
    for workers in ("0", "2"):
        report = tmp_path / f"report-{workers}.json"
        result = CliRunner().invoke(cli, ["load", "--source", str(MESSY), "--report", str(report),
                                          "--workers", workers])
        assert result.exit_code == 0, result.output
        reports.append(orjson.loads(report.read_bytes()))
    first, second = reports
    assert first["record_sets"]["specimens"]["created"] > 0
    assert {name: counts["unchanged"] for name, counts in second["record_sets"].items()} == \
        {name: counts["created"] for name, counts in first["record_sets"].items()}
