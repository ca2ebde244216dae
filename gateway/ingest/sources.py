"""Where export rows come from: a folder (or one file) of CSV or NDJSON, or a SQL database.

Every source yields the same thing — chunks of :class:`RawRow` (line number, cells as
stripped text) — and streams: a table is read front to back in chunks, never whole, so
memory does not grow with its size, and it can be read twice (the loader's first pass
collects ids, the second maps). Encoding follows the contract: UTF-8 with or without BOM,
otherwise Windows-1252, which is reported as a warning.
"""

from __future__ import annotations

import codecs
import csv
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO
from urllib.parse import unquote

import orjson

from gateway.ingest.mapping import LOAD_ORDER

Warn = Callable[[str], None]
CHUNK = 1000


@dataclass(frozen=True, slots=True)
class RawRow:
    """One record: its line (row number for SQL), its cells, or why it could not be read."""

    line: int
    cells: dict[str, str]
    error: str | None = None


class Table(Protocol):
    record_set: str
    location: str
    columns: list[str] | None
    """The header (CSV, SQL) once the table has been opened; None where rows name their own fields."""

    def chunks(self, size: int = CHUNK) -> AsyncIterator[list[RawRow]]: ...


def cell_text(value: Any) -> str:
    """A JSON or SQL value as the export's text form (what the mapping specs parse)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value).strip()


def detect_encoding(path: Path, warn: Warn) -> str:
    """`utf-8-sig` when the whole file decodes as UTF-8 (checked in chunks), else cp1252."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        warn(f"{path.name}: not valid UTF-8 (byte {exc.start} of a chunk), read as Windows-1252")
        return "cp1252"
    return "utf-8-sig"


def _header_name(text: str) -> str:
    return text.strip().lower()


@dataclass
class _FileTable:
    """A record set in one file, read in chunks of rows; subclasses say how rows come out of the file."""

    record_set: str
    path: Path
    warn: Warn
    columns: list[str] | None = None
    _encoding: str | None = field(default=None, repr=False)

    @property
    def location(self) -> str:
        return self.path.name

    async def chunks(self, size: int = CHUNK) -> AsyncIterator[list[RawRow]]:
        if self._encoding is None:
            self._encoding = detect_encoding(self.path, self.warn)
        chunk: list[RawRow] = []
        # cp1252 leaves five bytes undefined; those become U+FFFD rather than stop the load.
        with self.path.open(encoding=self._encoding, errors="replace", newline=self._newline) as handle:
            for row in self._rows(handle):
                chunk.append(row)
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    _newline: str | None = field(default=None, init=False, repr=False)

    def _rows(self, handle: TextIO) -> Iterator[RawRow]:
        raise NotImplementedError


@dataclass
class CsvTable(_FileTable):
    _newline: str | None = field(default="", init=False, repr=False)

    def _rows(self, handle: TextIO) -> Iterator[RawRow]:
        reader = csv.reader(handle)
        header = next(reader, None)
        self.columns = [_header_name(name) for name in header] if header else []
        width, last = len(self.columns), reader.line_num
        for cells in reader:
            line, last = last + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            error = f"{len(cells)} cells but the header has {width}" if len(cells) > width else None
            yield RawRow(line, {k: v.strip() for k, v in zip(self.columns, cells, strict=False)}, error)


@dataclass
class NdjsonTable(_FileTable):
    def _rows(self, handle: TextIO) -> Iterator[RawRow]:
        for line, text in enumerate(handle, start=1):
            if text.strip():
                yield _json_row(line, text)


def _json_row(line: int, text: str) -> RawRow:
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return RawRow(line, {}, f"invalid JSON: {exc}")
    if not isinstance(record, dict):
        return RawRow(line, {}, "not a JSON object")
    return RawRow(line, {_header_name(k): cell_text(v) for k, v in record.items()})


@dataclass
class SqliteTable:
    record_set: str
    database: Path
    columns: list[str] | None = None

    @property
    def location(self) -> str:
        return f"{self.database.name}:{self.record_set}"

    async def chunks(self, size: int = CHUNK) -> AsyncIterator[list[RawRow]]:
        connection = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
        try:
            cursor = connection.execute(f'SELECT * FROM "{self.record_set}"')
            self.columns = [_header_name(d[0]) for d in cursor.description]
            number = 0
            while rows := cursor.fetchmany(size):
                chunk = []
                for row in rows:
                    number += 1
                    chunk.append(RawRow(number, dict(zip(self.columns, map(cell_text, row), strict=True))))
                yield chunk
        finally:
            connection.close()


@dataclass
class PostgresTable:
    record_set: str
    url: str
    columns: list[str] | None = None

    @property
    def location(self) -> str:
        return f"postgresql:{self.record_set}"

    async def chunks(self, size: int = CHUNK) -> AsyncIterator[list[RawRow]]:
        import asyncpg

        connection = await asyncpg.connect(self.url)
        try:
            async with connection.transaction(readonly=True):
                number, chunk = 0, []
                async for record in connection.cursor(f'SELECT * FROM "{self.record_set}"', prefetch=size):
                    if self.columns is None:
                        self.columns = [_header_name(k) for k in record.keys()]  # noqa: SIM118 (a Record iterates values)
                    number += 1
                    chunk.append(RawRow(number, dict(zip(self.columns, map(cell_text, record.values()), strict=True))))
                    if len(chunk) >= size:
                        yield chunk
                        chunk = []
                if chunk:
                    yield chunk
        finally:
            await connection.close()


class SourceError(Exception):
    """The source cannot be read at all (no such folder, unsupported URL, no record set)."""


async def open_source(source: str, warn: Warn) -> dict[str, Table]:
    """The record sets `source` holds, by name (an incremental export may hold only some)."""
    if "://" in source:
        scheme = source.split("://", 1)[0].split("+", 1)[0]
        if scheme == "sqlite":
            return _sqlite_tables(source)
        if scheme in ("postgresql", "postgres"):
            return await _postgres_tables("postgresql://" + source.split("://", 1)[1])
        raise SourceError(f"unsupported source URL {source!r}: use a folder, a file, sqlite:///FILE or postgresql://")
    path = Path(source)
    if path.is_file():
        table = _file_table(path, warn)
        if table is None:
            raise SourceError(f"{path.name}: expected one of {', '.join(LOAD_ORDER)} as .csv or .ndjson")
        return {table.record_set: table}
    if not path.is_dir():
        raise SourceError(f"{source}: no such folder or file")
    tables: dict[str, Table] = {}
    for name in LOAD_ORDER:
        found = [p for p in (path / f"{name}.csv", path / f"{name}.ndjson") if p.is_file()]
        if len(found) > 1:
            warn(f"{name}: both {name}.csv and {name}.ndjson present; read {name}.csv")
        table = _file_table(found[0], warn) if found else None
        if table is not None:
            tables[name] = table
    if not tables:
        raise SourceError(f"{source}: holds none of {', '.join(f'{n}.csv' for n in LOAD_ORDER)} (or .ndjson)")
    return tables


def _file_table(path: Path, warn: Warn) -> Table | None:
    if path.stem not in LOAD_ORDER:
        return None
    if path.suffix == ".csv":
        return CsvTable(path.stem, path, warn)
    if path.suffix == ".ndjson":
        return NdjsonTable(path.stem, path, warn)
    return None


def _sqlite_tables(url: str) -> dict[str, Table]:
    """`sqlite:///relative.db` or `sqlite:////absolute.db`, as for the store's URL."""
    path = Path(unquote(url.split("://", 1)[1][1:].split("?", 1)[0]))
    if not path.is_file():
        raise SourceError(f"{url}: no such SQLite file")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type IN ('table','view')")}
    finally:
        connection.close()
    return {name: SqliteTable(name, path) for name in LOAD_ORDER if name in names}


async def _postgres_tables(url: str) -> dict[str, Table]:
    """Tables or views on the connection's search path (`?search_path=schema` picks a schema)."""
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        present = [name for name in LOAD_ORDER if await connection.fetchval("SELECT to_regclass($1)", name)]
    finally:
        await connection.close()
    return {name: PostgresTable(name, url) for name in present}
