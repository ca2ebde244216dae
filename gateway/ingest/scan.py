"""The first pass of a load: what the rules need to know about other records, before any row maps.

Kept per record set: its keys (a duplicate in one load rejects *both* rows; a reference to a
key still to come waits for it), the values carried per subject (an MRN given on one row
reaches the subject's Patient), unknown columns (reported once), the latest `updated_at`
and a SHA-256 over the rows (the Provenance's). Streaming: only these are kept, not rows;
the keys and carried values, which grow with the export, in the load's scratch (scratch.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from gateway.ingest.mapping import Mappings, RecordMapping
from gateway.ingest.report import LoadReport
from gateway.ingest.scratch import Scratch
from gateway.ingest.sources import RawRow, Table
from gateway.ingest.values import Reject, as_instant, parse_when

CONFLICT_EXAMPLES = 5
"""Conflicting carried values quoted in the report's warning (all are counted)."""


@dataclass
class Index:
    """What the first pass learnt besides the keys and carried values (those are in the scratch):
    refused record sets, the rows' number, latest `updated_at` and digest."""

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


async def scan(tables: dict[str, Table], mappings: Mappings, report: LoadReport, since: datetime | None,
               scratch: Scratch) -> Index:
    """Read every table once, keys and carried values into `scratch`; refused files, unknown
    columns and conflicting carried values go to `report`."""
    index = Index()
    for name, table in tables.items():
        spec = mappings.record_sets[name]
        unknown: set[str] = set()
        index.digest.update(name.encode())
        async for chunk in table.chunks():
            if not header_ok(index, report, spec, table):
                break
            keys: list[tuple[str, int]] = []
            carried: list[tuple[str, str, str, int]] = []
            for row in chunk:
                if not included(spec, row, since):
                    continue
                index.rows += 1
                index.digest.update(orjson.dumps(row.cells, option=orjson.OPT_SORT_KEYS))
                unknown.update(row.cells.keys() - spec.columns.keys())
                _note_updated(index, spec, row)
                if key := row.cells.get(spec.key, ""):
                    keys.append((key, row.line))
                carried.extend(_carried(spec, row))
            scratch.add_keys(name, keys)
            scratch.add_carried(name, carried)
        header_ok(index, report, spec, table)
        if unknown:
            report.warn(f"{table.location}: unknown columns ignored: {', '.join(sorted(unknown))}")
    count, first = scratch.end_scan(CONFLICT_EXAMPLES)
    if count:
        examples = "; ".join(f"{subject} {column} {kept!r} vs {value!r} ({record_set} line {line})"
                             for subject, column, kept, value, record_set, line in first)
        report.warn(f"{count} subjects with conflicting values, first kept: {examples}")
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


def _carried(spec: RecordMapping, row: RawRow) -> list[tuple[str, str, str, int]]:
    """(subject, column, value, line) of the row's non-empty carried values."""
    subject = row.cells.get(spec.carry_key or "", "")
    if not subject:
        return []
    return [(subject, column, value, row.line) for column in spec.carry_columns if (value := row.cells.get(column, ""))]
