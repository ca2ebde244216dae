"""Fixtures of the ingestion tests: the hand-written messy export in every source kind, and
stores on SQLite and PostgreSQL (the session's throwaway databases, see tests/conftest.py)."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import orjson
import pytest

from gateway.store import Store

MESSY = Path(__file__).parent / "data" / "messy"
RECORD_SETS = ("studies", "consents", "specimens", "participants")


def export_rows(folder: Path) -> dict[str, tuple[list[str], list[dict[str, str]]]]:
    """Header and well-formed rows of each CSV (a ragged row cannot exist in NDJSON or SQL)."""
    out = {}
    for name in RECORD_SETS:
        with (folder / f"{name}.csv").open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            rows = [dict(zip(header, row, strict=True)) for row in reader if len(row) == len(header)]
        out[name] = (header, rows)
    return out


def write_ndjson(folder: Path, export: dict) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (_, rows) in export.items():
        lines = (orjson.dumps({k: (v or None) for k, v in row.items()}) for row in rows)
        (folder / f"{name}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    return str(folder)


def write_sqlite(path: Path, export: dict) -> str:
    connection = sqlite3.connect(path)
    with connection:
        for name, (header, rows) in export.items():
            connection.execute(f'CREATE TABLE "{name}" ({", ".join(f"{c} TEXT" for c in header)})')
            connection.executemany(f'INSERT INTO "{name}" VALUES ({", ".join("?" * len(header))})',
                                   [[row[c] or None for c in header] for row in rows])
    connection.close()
    return f"sqlite:///{path}"


async def write_postgres(url: str, schema: str, export: dict) -> str:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
        for name, (header, rows) in export.items():
            await connection.execute(f'CREATE TABLE "{schema}"."{name}" ({", ".join(f"{c} text" for c in header)})')
            await connection.copy_records_to_table(name, schema_name=schema,
                                                   records=[[row[c] or None for c in header] for row in rows])
    finally:
        await connection.close()
    return f"{url}?search_path={schema}"


async def make_source(kind: str, tmp: Path, pg_databases, folder: Path = MESSY) -> str:
    """The export in `folder` as a source of `kind`: csv, ndjson, sqlite or postgresql."""
    if kind == "csv":
        return str(folder)
    export = export_rows(folder)
    if kind == "ndjson":
        return write_ndjson(tmp / "ndjson", export)
    if kind == "sqlite":
        return write_sqlite(tmp / "export.db", export)
    return await write_postgres(await pg_databases.create(), "lims_export", export)


async def make_store(kind: str, tmp: Path, pg_databases) -> Store:
    url = f"sqlite:///{tmp / 'store.db'}" if kind == "sqlite" else await pg_databases.create()
    return await Store.open(url)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    yield store
    await store.close()


async def read(store: Store, type_: str, id_: str) -> dict:
    raw = await store.read_bytes(type_, id_)
    assert raw is not None, f"{type_}/{id_} not stored"
    return orjson.loads(raw)
