"""The search parameters the gateway serves: official R4 definitions plus the biobank's own.

Nothing is typed here: the R4 SearchParameters come from `gateway.fhir.definitions`
(generated from the official package) and the biobank's from `profiles/SearchParameter-*.json`.
A parameter is served when its type is one the index understands and its FHIRPath compiles;
`declared()` lists exactly those, so the CapabilityStatement never promises what fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from gateway.fhir.definitions import search_parameters
from gateway.profiles.fhirpath import compile_expression
from gateway.search.values import local_reference
from gateway.served import STORED_TYPES

INDEXED_TYPES = ("token", "string", "date", "reference", "quantity", "number", "uri")
COLUMN_PARAMS = {"_id": "id", "_lastUpdated": "ts"}
"""Parameters answered from the `resources` row itself rather than an index table."""

PROFILES_DIR = Path(__file__).resolve().parent.parent.parent / "profiles"
_RESOLVE_IS = re.compile(r"\.where\(resolve\(\) is (\w+)\)")
_ABSTRACT = ("Resource", "DomainResource")

Extract = Callable[[dict[str, Any]], list[Any]]


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One parameter on one resource type; `targets` are the reference target types (served ones)."""

    type_name: str
    code: str
    kind: str
    url: str
    expression: str
    targets: tuple[str, ...] = ()
    documentation: str = ""
    extract: Extract | None = field(default=None, compare=False, repr=False)

    @property
    def column(self) -> str | None:
        return COLUMN_PARAMS.get(self.code)

    def declaration(self) -> dict[str, str]:
        return {"name": self.code, "definition": self.url, "type": self.kind, "documentation": self.documentation}


def _expression_for(type_: str, expression: str) -> str | None:
    """The part of a (possibly multi-type) expression that applies to `type_`, rooted at it."""
    parts = []
    for part in (p.strip() for p in expression.split(" | ")):
        bare = part.lstrip("(")
        for abstract in _ABSTRACT:
            if bare.startswith(abstract + "."):
                part = part.replace(abstract + ".", type_ + ".", 1)
                bare = bare.replace(abstract + ".", type_ + ".", 1)
        if bare.startswith(type_ + "."):
            parts.append(part)
    return " | ".join(parts) or None


def _only_targets(kind: str, extract: Extract) -> Extract:
    """`X.where(resolve() is Patient)`: resolve() needs no fetch here, the reference names its type."""
    def run(resource: dict[str, Any]) -> list[Any]:
        return [v for v in extract(resource) if isinstance(v, dict)
                and (local_reference(str(v.get("reference", ""))) or ("",))[0] == kind]
    return run


def _compile(expression: str) -> Extract | None:
    resolve_types = set(_RESOLVE_IS.findall(expression))
    bare = _RESOLVE_IS.sub("", expression)
    if "resolve()" in bare or len(resolve_types) > 1:
        return None
    try:
        extract = compile_expression(bare)
    except Exception:  # an expression fhirpathpy cannot compile is simply not served
        return None
    return _only_targets(resolve_types.pop(), extract) if resolve_types else extract


class Registry:
    """Parameters by resource type and code, each with its compiled extractor."""

    def __init__(self, definitions: Iterable[dict[str, Any]], types: Iterable[str]) -> None:
        self.types = frozenset(types)
        self._by_type: dict[str, dict[str, SearchParam]] = {t: {} for t in self.types}
        for definition in definitions:
            if definition.get("type") not in INDEXED_TYPES or not definition.get("expression"):
                continue
            for type_ in definition.get("base", ()):
                for target in ([type_] if type_ in self.types else sorted(self.types) if type_ in _ABSTRACT else []):
                    self._add(target, definition)

    def _add(self, type_: str, definition: dict[str, Any]) -> None:
        expression = _expression_for(type_, definition["expression"])
        if expression is None:
            return
        code = definition["code"]
        extract = None if code in COLUMN_PARAMS else _compile(expression)
        if extract is None and code not in COLUMN_PARAMS:
            return
        targets = tuple(t for t in definition.get("target", ()) if t in self.types)
        documentation = definition.get("description") or f"{definition['type']} search on {expression}"
        self._by_type[type_][code] = SearchParam(type_, code, definition["type"], definition["url"], expression,
                                                 targets, documentation, extract)

    def get(self, type_: str, code: str) -> SearchParam | None:
        return self._by_type.get(type_, {}).get(code)

    def of(self, type_: str) -> list[SearchParam]:
        return sorted(self._by_type.get(type_, {}).values(), key=lambda p: p.code)

    def references(self, type_: str) -> list[SearchParam]:
        return [p for p in self.of(type_) if p.kind == "reference"]

    def indexed(self, type_: str) -> list[SearchParam]:
        """Parameters with index rows (everything but the `resources` columns)."""
        return [p for p in self.of(type_) if p.extract is not None]


def profile_search_parameters(folder: Path) -> list[dict[str, Any]]:
    return [orjson.loads(p.read_bytes()) for p in sorted(folder.glob("SearchParameter-*.json"))]


def build_registry(profiles_dir: Path = PROFILES_DIR, extra: Iterable[dict[str, Any]] = (),
                   types: Iterable[str] = STORED_TYPES) -> Registry:
    """R4 definitions, then the biobank's (a biobank parameter with an R4 code replaces it), then `extra`."""
    return Registry([*search_parameters(), *profile_search_parameters(profiles_dir), *extra], types)


@cache
def default_registry() -> Registry:
    return build_registry()
