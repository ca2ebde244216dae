"""The load report: what a load did with every row, as JSON (INTERFACES.md) and on a terminal.

Per record set: read = created + updated + unchanged + rejected, exactly — every row read
ends in one of those, so nothing is dropped silently. Derived resources (Patient, Group,
Organization, Practitioner, Provenance) are counted apart under `resources`. Rows that
`--since` filtered out are not read; their number is given as `skipped`. `provenance` lists
the parts of the load's Provenance (one for every PROVENANCE_TARGETS resources the load
accepted, see loader.py); empty when the load accepted nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

Outcome = Literal["created", "updated", "unchanged"]


@dataclass
class Counts:
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    skipped: int = 0

    def reconciles(self) -> bool:
        return self.read == self.created + self.updated + self.unchanged + self.rejected


@dataclass(frozen=True, slots=True)
class RejectEntry:
    record_set: str
    file: str
    line: int | None
    record_id: str | None
    reason: str


@dataclass
class LoadReport:
    source: str
    record_sets: dict[str, Counts] = field(default_factory=dict)
    resources: dict[str, dict[str, int]] = field(default_factory=dict)
    rejects: list[RejectEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    provenance: list[str] = field(default_factory=list)
    """The load's Provenance, `Provenance/<id>` of each of its parts in order (see loader.PROVENANCE_TARGETS)."""

    def counts(self, record_set: str) -> Counts:
        return self.record_sets.setdefault(record_set, Counts())

    def reject(self, record_set: str, file: str, line: int | None, record_id: str | None, reason: str,
               counted: bool = True) -> None:
        """A refused row (`counted`), or a refused file, whose rows were never read."""
        self.rejects.append(RejectEntry(record_set, file, line, record_id or None, reason))
        self.counts(record_set).rejected += counted

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def stored(self, resource_type: str, outcome: Outcome) -> None:
        by_outcome = self.resources.setdefault(resource_type, {"created": 0, "updated": 0, "unchanged": 0})
        by_outcome[outcome] += 1

    @property
    def reconciled(self) -> bool:
        return all(c.reconciles() for c in self.record_sets.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "record_sets": {name: asdict(c) for name, c in self.record_sets.items()},
            "resources": self.resources,
            "rejects": [asdict(r) for r in self.rejects],
            "warnings": self.warnings,
            "provenance": self.provenance,
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2))

    def print(self, console: Console | None = None, max_rejects: int = 20) -> None:
        """A readable summary: the counts table, the first rejects, every warning."""
        console = console or Console()
        table = Table(title=f"Load of {self.source}")
        for heading in ("record set", "read", "created", "updated", "unchanged", "rejected", "skipped"):
            table.add_column(heading, justify="left" if heading == "record set" else "right")
        for name, c in self.record_sets.items():
            table.add_row(name, *(str(v) for v in (c.read, c.created, c.updated, c.unchanged, c.rejected, c.skipped)))
        for name, by_outcome in sorted(self.resources.items()):
            table.add_row(f"[dim]{name}[/dim]", "", *(str(by_outcome[k]) for k in ("created", "updated", "unchanged")),
                          "", "")
        console.print(table)
        if self.rejects:
            more = len(self.rejects) > max_rejects
            console.print(f"[bold]{len(self.rejects)} rejected[/bold]"
                          + (f" (first {max_rejects} shown; all in the JSON report)" if more else ""))
            for r in self.rejects[:max_rejects]:
                where = f"{r.file}:{r.line}" if r.line is not None else r.file
                console.print(f"  {escape(where)} [cyan]{escape(r.record_id or '-')}[/cyan] {escape(r.reason)}",
                              highlight=False)
        for message in self.warnings:
            console.print(f"[yellow]warning[/yellow] {escape(message)}", highlight=False)
