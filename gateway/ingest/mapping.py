"""The mapping engine: one YAML spec per record set (mappings/<name>.yaml) turns a row of
text cells into FHIR resources, or into a :class:`Reject` with the reason.

Everything a record set needs is data in its spec: columns (type, required, conditional
requirement, ConceptMap, bounds), references to check across records, the primary
resource's template and derived resources (Patient, Organization, ...). A new column or
code is an edit to YAML or a ConceptMap; this module only interprets them. Checks that need
other records (duplicates, parents, unknown studies) are the loader's (loader.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.ingest.conceptmaps import ConceptMap, read_conceptmaps
from gateway.ingest.template import Compiler, Node, TemplateError
from gateway.ingest.values import Reject, is_future, parse_boolean, parse_date, parse_decimal, parse_when

MAPPINGS_DIR = Path(__file__).resolve().parents[2] / "mappings"
LOAD_ORDER = ("studies", "consents", "specimens", "participants")
"""Referenced record sets first, so most references resolve without waiting."""

_PARSERS: dict[str, Callable[[str], Any]] = {
    "string": str,
    "code": str,
    "date": parse_date,
    "datetime": parse_when,
    "boolean": parse_boolean,
    "decimal": parse_decimal,
    "list": lambda text: [item.strip() for item in text.split("|") if item.strip()],
}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str = "string"
    required: bool = False
    required_if: Mapping[str, str] | None = None
    conceptmap: str | None = None
    default: str | None = None
    minimum: float | None = None
    not_future: bool = False

    def is_required(self, cells: Mapping[str, str]) -> bool:
        """`required_if` values: "" = when that cell is empty, "*" = when set, else equal to it."""
        if self.required:
            return True
        for other, expected in (self.required_if or {}).items():
            cell = cells.get(other, "")
            if expected == "":
                wanted = not cell
            else:
                wanted = bool(cell) if expected == "*" else cell.casefold() == expected.casefold()
            if wanted:
                return True
        return False


@dataclass(frozen=True, slots=True)
class Reference:
    """A column naming a record of `record_set` that must exist in this load or the store."""

    column: str
    record_set: str
    reason: str


@dataclass(frozen=True, slots=True)
class Inherit:
    """An element a row takes from the record its `reference` column names, when it has none."""

    reference: str
    element: str

    def get(self, resource: Mapping[str, Any]) -> Any:
        node: Any = resource
        for step in self.element.split("."):
            node = node.get(step) if isinstance(node, Mapping) else None
        return node

    def with_value(self, resource: dict[str, Any], value: Any) -> dict[str, Any]:
        """A copy of `resource` with the element set, sharing everything off its path (the
        original stays as it was: a load may still need it, see loader.Load.settle)."""
        step, _, rest = self.element.partition(".")
        if not rest:
            return {**resource, step: value}
        child = resource.get(step)
        return {**resource, step: Inherit(self.reference, rest).with_value(child if isinstance(child, dict) else {},
                                                                             value)}


@dataclass(frozen=True, slots=True)
class Derived:
    build: Node
    update_requires: str | None


@dataclass(frozen=True, slots=True)
class Cohort:
    """How participants become the members of their study's Group (see participants.yaml)."""

    study: str
    status: str
    member_statuses: frozenset[str]
    member: Node
    template: Node


class RecordMapping:
    """One record set's spec, compiled: `parse` checks and types a row, `build` maps it."""

    def __init__(self, spec: Mapping[str, Any], conceptmaps: Mapping[str, ConceptMap], folder: Path) -> None:
        self.name: str = spec["record_set"]
        self.key: str = spec["key"]
        self.resource_type: str = spec["resource"]["resourceType"]
        self.updated: str = spec["updated"]
        self.columns = {name: Column(name, **options) for name, options in spec["columns"].items()}
        self.carry_key: str | None = (spec.get("carry") or {}).get("key")
        self.carry_columns: tuple[str, ...] = tuple((spec.get("carry") or {}).get("columns", ()))
        self.references = tuple(Reference(**ref) for ref in spec.get("references", ()))
        self.reference_sets = {r.column: r.record_set for r in self.references}
        self.inherit = Inherit(**spec["inherit"]) if "inherit" in spec else None
        self.conceptmaps = conceptmaps
        for column in self.columns.values():
            if column.conceptmap and column.conceptmap not in conceptmaps:
                raise TemplateError(f"{self.name}.{column.name}: no conceptmap {column.conceptmap!r}")
        compiler = self._compiler(set())
        self._id = compiler.compile(spec["id"])
        self._resource = compiler.compile({**spec["resource"], "id": spec["id"]})
        self.derived = tuple(self._derived(entry, folder, compiler) for entry in spec.get("derived", ()))
        cohort = spec.get("cohort")
        self.cohort = Cohort(
            cohort["study"], cohort["status"], frozenset(cohort["member_statuses"]), compiler.compile(cohort["member"]),
            self._compiler({"members", "quantity"}).compile(cohort["template"]),
        ) if cohort else None

    def _compiler(self, extra: set[str]) -> Compiler:
        maps = {c.name: c.conceptmap for c in self.columns.values() if c.conceptmap}
        return Compiler(set(self.columns) | set(self.carry_columns) | extra, maps, self.conceptmaps)

    @staticmethod
    def _derived(entry: Mapping[str, Any], folder: Path, compiler: Compiler) -> Derived:
        if "include" in entry:
            entry = yaml.safe_load((folder / entry["include"]).read_text(encoding="utf-8"))
        return Derived(compiler.compile(entry["template"]), entry.get("update_requires"))

    def parse(self, cells: Mapping[str, str]) -> dict[str, Any]:
        """Typed values of a row's cells (stripped text), or Reject naming the first bad cell."""
        values: dict[str, Any] = {}
        for column in self.columns.values():
            text = cells.get(column.name, "") or (column.default or "")
            if not text:
                if column.is_required(cells):
                    raise Reject(f"missing required {column.name}")
                values[column.name] = None
                continue
            try:
                value = _PARSERS[column.type](text)
            except Reject as exc:
                raise Reject(f"{column.name}: {exc}") from None
            if column.conceptmap:
                concept = self.conceptmaps[column.conceptmap].lookup(text)
                if concept is None:
                    raise Reject(f"unknown {column.name} code {text!r}")
                value = concept.code
            if column.minimum is not None and value < column.minimum:
                raise Reject(f"{column.name} {text} is below {column.minimum:g}")
            if column.not_future and is_future(value):
                raise Reject(f"{column.name} {text} is in the future")
            values[column.name] = value
        return values

    def resource_id(self, key_value: str) -> str:
        return self._id({self.key: key_value})

    def build(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The primary resource (derived ones are built from `derived`, see prepare.py)."""
        return self._resource(values)


@dataclass(frozen=True, slots=True)
class Mappings:
    record_sets: dict[str, RecordMapping]
    provenance: Node

    def target(self, spec: RecordMapping, column: str, value: str) -> str:
        """`Type/id` of the record that `spec`'s reference `column` names with `value`."""
        target = self.record_sets[spec.reference_sets[column]]
        return f"{target.resource_type}/{target.resource_id(value)}"


def load_mappings(folder: Path = MAPPINGS_DIR) -> Mappings:
    """Read and compile every spec of `folder` (a broken spec fails here, before any row)."""
    conceptmaps = read_conceptmaps(folder / "conceptmaps")
    record_sets = {}
    for name in LOAD_ORDER:
        spec = yaml.safe_load((folder / f"{name}.yaml").read_text(encoding="utf-8"))
        try:
            record_sets[name] = RecordMapping(spec, conceptmaps, folder)
        except (TemplateError, KeyError, TypeError) as exc:
            raise TemplateError(f"mappings/{name}.yaml: {exc}") from exc
    provenance_spec = yaml.safe_load((folder / "provenance.yaml").read_text(encoding="utf-8"))
    names = {"hash", "recorded", "rows", "record_sets", "targets", "part", "parts"}
    provenance = Compiler(names, {}, conceptmaps).compile(provenance_spec["template"])
    return Mappings(record_sets, provenance)
