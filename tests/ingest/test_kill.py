"""A load killed with SIGKILL at an arbitrary point and run again ends in the same state as
one clean load: same resources, same content, one version each, the same Provenance parts."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import orjson
import pytest

from gateway.ingest import load, write_demo_export
from gateway.store import Store

ROOT = Path(__file__).resolve().parents[2]
LOADER = """
import asyncio, sys
from gateway.store import Store
from gateway.ingest import load

async def main():
    store = await Store.open(sys.argv[1])
    print("loading", flush=True)
    await load(store, sys.argv[2])
    await store.close()

asyncio.run(main())
"""


def _content(raw: bytes) -> bytes:
    body = orjson.loads(raw)
    body.get("meta", {}).pop("versionId", None)
    body.get("meta", {}).pop("lastUpdated", None)
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


async def state(url: str) -> tuple[dict[tuple[str, str], tuple[int, bytes]], int]:
    """Every current resource (version, content without version meta) and the number of versions."""
    sql = "SELECT type, id, version, content FROM resources"
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.split(":///", 1)[1])
        rows = connection.execute(sql).fetchall()
        versions = connection.execute("SELECT count(*) FROM resource_versions").fetchone()[0]
        connection.close()
    else:
        connection = await asyncpg.connect(url)
        rows = await connection.fetch(sql)
        versions = await connection.fetchval("SELECT count(*) FROM resource_versions")
        await connection.close()
    return {(r[0], r[1]): (r[2], _content(bytes(r[3]))) for r in rows}, versions


async def count_specimens(url: str) -> int:
    try:
        current, _ = await state(url)
    except (sqlite3.Error, asyncpg.PostgresError):
        return 0
    return sum(1 for type_, _ in current if type_ == "Specimen")


@pytest.mark.parametrize("store_kind", ["sqlite", "postgresql"])
async def test_a_killed_load_rerun_converges_to_a_clean_load(store_kind, tmp_path, pg_databases):
    export = tmp_path / "export"
    info = write_demo_export(export, 1500, seed=11)

    async def url() -> str:
        if store_kind == "sqlite":
            return f"sqlite:///{tmp_path / f'store-{time.monotonic_ns()}.db'}"
        return await pg_databases.create()

    killed_url, clean_url = await url(), await url()
    await (await Store.open(killed_url)).close()  # schema in place before the child starts
    child = subprocess.Popen([sys.executable, "-c", LOADER, killed_url, str(export)], cwd=ROOT,
                             stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 600
    while await count_specimens(killed_url) == 0 and child.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert child.poll() is None, "the load finished before it could be killed: use a larger export"
    child.send_signal(signal.SIGKILL)
    child.wait()
    partial, _ = await state(killed_url)
    assert 0 < sum(1 for t, _ in partial if t == "Specimen") < info["rows"]["specimens"]

    store = await Store.open(killed_url)
    rerun = await load(store, str(export))
    await store.close()
    assert rerun.reconciled
    store = await Store.open(clean_url)
    clean = await load(store, str(export))
    await store.close()

    killed_state, killed_versions = await state(killed_url)
    clean_state, clean_versions = await state(clean_url)
    assert killed_state.keys() == clean_state.keys()
    assert killed_state == clean_state
    assert killed_versions == clean_versions == len(clean_state)  # nothing doubled: one version each
    provenance = sorted(id_ for t, id_ in clean_state if t == "Provenance")
    assert provenance == sorted(ref.split("/")[1] for ref in clean.provenance) == \
        sorted(ref.split("/")[1] for ref in rerun.provenance)
    assert len(provenance) > 1  # parts (loader.PROVENANCE_TARGETS): a killed load converges on them too
