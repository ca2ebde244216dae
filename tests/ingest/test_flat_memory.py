"""What keeps a load's memory flat (issue #6) keeps its rules: the Provenance in parts naming
every loaded resource exactly once, the same parts on every load of the same rows, and the
per-row bookkeeping in a scratch file that is gone when the load ends, however it ends."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.ingest import loader
from gateway.store import Store
from tests.ingest.conftest import MESSY, make_store, read
from tests.ingest.test_incremental import export


async def current(store: Store) -> dict[tuple[str, str], dict[str, Any]]:
    """Every resource not deleted, by (type, id)."""
    rows = await store.db.fetchall("SELECT type, id, content FROM resources WHERE deleted = ?", (False,))
    return {(type_, id_): orjson.loads(bytes(content)) for type_, id_, content in rows}


async def versions(store: Store) -> int:
    return (await store.db.fetchone("SELECT count(*) FROM resource_versions"))[0]


@pytest.mark.parametrize("store_kind", ["sqlite", "postgresql"])
async def test_the_provenance_parts_name_every_loaded_resource_exactly_once(store_kind, tmp_path, pg_databases,
                                                                             monkeypatch):
    monkeypatch.setattr(loader, "PROVENANCE_TARGETS", 7)
    store = await make_store(store_kind, tmp_path, pg_databases)
    try:
        report = await loader.load(store, str(MESSY), workers=0)
        stored = await current(store)
        loaded = {f"{t}/{i}" for t, i in stored if t != "Provenance"}
        parts = [stored[("Provenance", ref.split("/")[1])] for ref in report.provenance]
        assert len(parts) == -(-len(loaded) // 7) > 1
        named = [target["reference"] for part in parts for target in part["target"]]
        assert Counter(named) == Counter(loaded)  # each exactly once, nothing else
        assert named == sorted(named) and all(len(part["target"]) <= 7 for part in parts)
        identities = {part["entity"][0]["what"]["identifier"]["value"] for part in parts}
        assert len(identities) == 1 and identities.pop().startswith("urn:sha256:")
        for number, part in enumerate(parts, start=1):
            assert part["id"].endswith(f"-{number}")
            assert part["entity"][0]["what"]["display"].endswith(f"part {number} of {len(parts)})")

        before = await versions(store)
        again = await loader.load(store, str(MESSY), workers=0)
        assert again.provenance == report.provenance
        assert again.resources["Provenance"] == {"created": 0, "updated": 0, "unchanged": len(parts)}
        assert await versions(store) == before  # the parts derive from rows and store only

        monkeypatch.setattr(loader, "PROVENANCE_TARGETS", 20)  # as if the load had named fewer resources
        fewer = await loader.load(store, str(MESSY), workers=0)
        assert len(fewer.provenance) < len(report.provenance)
        stale = report.provenance[len(fewer.provenance):]
        assert any(all(ref.split("/")[1] in w for ref in stale) for w in fewer.warnings)
        for ref in stale:
            assert await store.read_bytes(*ref.split("/")) is None
        named = [t["reference"] for ref in fewer.provenance
                 for t in (await read(store, "Provenance", ref.split("/")[1]))["target"]]
        assert Counter(named) == Counter(loaded)
    finally:
        await store.close()


def open_in(folder: Path) -> list[str]:
    """The files this process holds open in `folder` (an unlinked one ends with ' (deleted)')."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


@pytest.fixture
def scratch_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory of the loads of the test (where the scratch is made)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


async def test_the_scratch_lives_only_while_the_load_runs(scratch_dir, sqlite_store, monkeypatch):
    seen: list[list[str]] = []
    finish = loader.Load.finish

    async def watched(self: loader.Load) -> None:
        seen.append(open_in(scratch_dir))
        await finish(self)

    monkeypatch.setattr(loader.Load, "finish", watched)
    report = await loader.load(sqlite_store, str(MESSY), workers=0)
    assert report.reconciled
    [during] = seen
    assert len(during) == 1 and during[0].endswith(" (deleted)")  # on disk, unlinked from the start
    assert open_in(scratch_dir) == [] and list(scratch_dir.iterdir()) == []


class FailingStore:
    """A store whose writes fail (a full disk, a lost connection)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def put_many(self, *_: Any) -> list[Any]:
        raise OSError("disk full")


async def test_a_failed_load_leaves_no_scratch_behind(scratch_dir, sqlite_store):
    with pytest.raises(OSError, match="disk full"):
        await loader.load(FailingStore(sqlite_store), str(MESSY), workers=0)
    assert open_in(scratch_dir) == [] and list(scratch_dir.iterdir()) == []


async def test_conflicting_carried_values_keep_the_first_and_are_all_counted(tmp_path, sqlite_store):
    rows = "".join(f"BB-{n}-01,S{n // 10},MGH-000000{n},,WB,2020-01-01T08:00:00,10,mL,AVAILABLE,2020-01-02\n"
                   for n in (10, 11, 12, 20, 21))
    report = await loader.load(sqlite_store, export(tmp_path / "e", rows), workers=0)
    assert report.reconciled
    assert ("3 subjects with conflicting values, first kept: S1 mrn 'MGH-00000010' vs 'MGH-00000011' "
            "(specimens line 3); S1 mrn 'MGH-00000010' vs 'MGH-00000012' (specimens line 4); "
            "S2 mrn 'MGH-00000020' vs 'MGH-00000021' (specimens line 6)") in report.warnings
    patient = await read(sqlite_store, "Patient", "S1")
    assert patient["identifier"][1]["value"] == "MGH-00000010"
