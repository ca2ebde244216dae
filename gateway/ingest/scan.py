"""The first pass of a load: what the rules need to know about other records, before any row maps.

Kept per record set: its keys (a duplicate in one load rejects *both* rows; a reference to a
key still to come waits for it), the values carried per subject (an MRN given on one row
reaches the subject's Patient), unknown columns (reported once), the latest `updated_at`
and a SHA-256 over the rows (the Provenance's). Streaming: only these are kept, not rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from gateway.ingest.mapping import Mappings, RecordMapping
from gateway.ingest.report import LoadReport
from gateway.ingest.sources import RawRow, Table
from gateway.ingest.values import Reject, as_instant, parse_when


@dataclass
class Index:
    """What the first pass learnt: keys per record set, carried values, the rows' digest."""

    keys: dict[str, set[str]] = field(default_factory=dict)
    duplicates: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    carried: dict[str, dict[str, str]] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    rows: int = 0
    latest: datetime | None = None
    digest: Any = field(default_factory=hashlib.sha256)


def included(spec: RecordMapping, row: RawRow, since: datetime | None) -> bool:
    """False for rows `--since` leaves out (an unreadable `updated_at` is kept: it rejects)."""
    if since is None:
        return True
    try:
        return as_instant(parse_when(row.cells.get(spec.updated, ""))) > since
    except Reject:
        return True


async def scan(tables: dict[str, Table], mappings: Mappings, report: LoadReport, since: datetime | None) -> Index:
    """Read every table once; refused files and unknown columns go to `report`."""
    index = Index()
    conflicts: list[str] = []
    for name, table in tables.items():
        spec = mappings.record_sets[name]
        keys: dict[str, int] = {}
        duplicates: dict[str, list[int]] = {}
        unknown: set[str] = set()
        index.digest.update(name.encode())
        async for chunk in table.chunks():
            if not header_ok(index, report, spec, table):
                break
            for row in chunk:
                if not included(spec, row, since):
                    continue
                index.rows += 1
                index.digest.update(orjson.dumps(row.cells, option=orjson.OPT_SORT_KEYS))
                unknown.update(row.cells.keys() - spec.columns.keys())
                _note_updated(index, spec, row)
                key = row.cells.get(spec.key, "")
                if key in keys:
                    duplicates.setdefault(key, [keys[key]]).append(row.line)
                elif key:
                    keys[key] = row.line
                _carry(index, spec, row, conflicts)
        header_ok(index, report, spec, table)
        if unknown:
            report.warn(f"{table.location}: unknown columns ignored: {', '.join(sorted(unknown))}")
        index.keys[name] = set(keys)
        index.duplicates[name] = duplicates
    if conflicts:
        examples = "; ".join(conflicts[:5])
        report.warn(f"{len(conflicts)} subjects with conflicting values, first kept: {examples}")
    return index


def header_ok(index: Index, report: LoadReport, spec: RecordMapping, table: Table) -> bool:
    """A table whose header lacks the key column is refused whole (no header row, most likely)."""
    if spec.name in index.refused:
        return False
    if table.columns is not None and spec.key not in table.columns:
        index.refused.add(spec.name)
        report.reject(spec.name, table.location, 1, None,
                      f"header row missing or without {spec.key}: file not loaded", counted=False)
        return False
    return True


def _note_updated(index: Index, spec: RecordMapping, row: RawRow) -> None:
    try:
        moment = as_instant(parse_when(row.cells.get(spec.updated, "")))
    except Reject:
        return
    if index.latest is None or moment > index.latest:
        index.latest = moment


def _carry(index: Index, spec: RecordMapping, row: RawRow, conflicts: list[str]) -> None:
    subject = row.cells.get(spec.carry_key or "", "")
    if not subject:
        return
    for column in spec.carry_columns:
        value = row.cells.get(column, "")
        if not value:
            continue
        carried = index.carried.setdefault(subject, {})
        if column not in carried:
            carried[column] = value
        elif carried[column] != value:
            conflicts.append(f"{subject} {column} {carried[column]!r} vs {value!r} ({spec.name} line {row.line})")
