"""The template language of mappings/*.yaml, compiled once into plain Python closures.

A template is FHIR JSON with a few markers (mappings/README.md has the full table):

- `$col` — the column's typed value; `"Patient/{subject_id|id}"` — a string built from
  values (filters `id`, `slug`), absent when any of them is empty;
- `{$when: col | "!col" | "col=VALUE", ...}` — the object only when the condition holds;
- `{$codings | $coding | $code: col, conceptmap?, target?, source?, source_only?}` — code
  translation through a ConceptMap (`source` appends the local coding);
- `{$in: col, values: [...]}` — a boolean;
- list items `{$each: col, do: ...}` (`$_item`) and `{$each_key: {k: col}, do: ...}`
  (`_key`, `_value`) — one item per list element or per key.

Empty results (None, "", [], {}) vanish from their parent, so optional columns need no
special casing. Compilation checks every name against the columns, so a typo in a mapping
fails at start-up, not on row 80,000.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from gateway.ingest.conceptmaps import Concept, ConceptMap
from gateway.ingest.values import fhir_id, slug, to_json, to_text

Values = Mapping[str, Any]
Node = Callable[[Values], Any]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\|([a-z]+))?\}")
_FILTERS: dict[str, Callable[[str], str]] = {"id": fhir_id, "slug": slug}
_TRANSLATIONS = ("$codings", "$coding", "$code")
_SIZED = (str, list, dict)


class TemplateError(ValueError):
    """A mapping file is wrong (unknown column, conceptmap or marker): fix the YAML."""


def _same(text: str) -> str:
    return text


def _empty(value: Any) -> bool:
    """None, "", [] or {} (but not 0 or False), the values that vanish from their parent."""
    return value is None or (not value and isinstance(value, _SIZED))


class _Constant:
    """A template part without markers: its value, returned as is (only immutable ones are made)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self, _values: Values) -> Any:
        return self.value


class Compiler:
    """Compiles templates against the names a row offers and the ConceptMaps of the columns."""

    def __init__(self, names: set[str], column_maps: Mapping[str, str], conceptmaps: Mapping[str, ConceptMap]):
        self.names = names | {"_item", "_key", "_value"}
        self.column_maps = column_maps
        self.conceptmaps = conceptmaps

    def compile(self, node: Any) -> Node:
        if isinstance(node, str):
            return self._string(node)
        if isinstance(node, list):
            return self._list(node)
        if isinstance(node, dict):
            return self._dict(node)
        return _Constant(node)

    def _name(self, name: str) -> str:
        if name not in self.names:
            raise TemplateError(f"unknown column {name!r} in template")
        return name

    def _string(self, text: str) -> Node:
        if text.startswith("$"):
            name = self._name(text[1:])
            return lambda values: to_json(values.get(name))
        parts = _PLACEHOLDER.split(text)
        if len(parts) == 1:
            return _Constant(text)
        placeholders = []  # (text before, column, filter)
        for before, name, flt in zip(parts[0::3], parts[1::3], parts[2::3], strict=False):
            if flt and flt not in _FILTERS:
                raise TemplateError(f"unknown filter {flt!r} in {text!r}")
            placeholders.append((before, self._name(name), _FILTERS.get(flt or "", _same)))
        tail = parts[-1]

        def build(values: Values) -> str | None:
            out = []
            for before, name, flt in placeholders:
                value = values.get(name)
                if value is None or value == "":
                    return None
                out.append(before)
                out.append(flt(to_text(value)))
            out.append(tail)
            return "".join(out)

        return build

    def _list(self, items: list[Any]) -> Node:
        compiled = [(isinstance(item, dict) and _is_each(item), self.compile(item)) for item in items]

        def build(values: Values) -> list[Any] | None:
            out: list[Any] = []
            for spliced, item in compiled:
                value = item(values)
                if spliced:
                    out.extend(v for v in value or () if not _empty(v))
                elif value is not None and (value or not isinstance(value, _SIZED)):  # not _empty, inlined
                    out.append(value)
            return out or None

        return build

    def _each(self, node: dict[str, Any]) -> Callable[[Values], list[Any]]:
        body = self.compile(node["do"])
        if "$each" in node:
            column = self._name(node["$each"])
            return lambda values: [body({**values, "_item": item}) for item in values.get(column) or ()]
        pairs = [(key, self._name(column)) for key, column in node["$each_key"].items()]
        return lambda values: [body({**values, "_key": key, "_value": values.get(col)}) for key, col in pairs]

    def _dict(self, node: dict[str, Any]) -> Node:
        if _is_each(node):
            each = self._each(node)
            return lambda values: each(values) or None
        translation = next((marker for marker in _TRANSLATIONS if marker in node), None)
        if translation:
            return self._translate(translation, node)
        if "$in" in node:
            column, allowed = self._name(node["$in"]), frozenset(node["values"])
            return lambda values: values.get(column) in allowed
        guard = self._guard(node["$when"]) if "$when" in node else None
        fields = [(key, self.compile(value)) for key, value in node.items() if key != "$when"]
        unknown = [key for key, _ in fields if key.startswith("$")]
        if unknown:
            raise TemplateError(f"unknown template marker(s) {unknown}")

        parts = [(key, field.value if isinstance(field, _Constant) else None, field) for key, field in fields]

        def build(values: Values) -> dict[str, Any] | None:
            if guard is not None and not guard(values):
                return None
            out = {}
            for key, constant, field in parts:
                value = field(values) if constant is None else constant
                if value is not None and (value or not isinstance(value, _SIZED)):  # not _empty, inlined
                    out[key] = value
            return out or None

        return build

    def _guard(self, condition: str) -> Callable[[Values], bool]:
        if condition.startswith("!"):
            name = self._name(condition[1:])
            return lambda values: _empty(values.get(name))
        name, sep, expected = condition.partition("=")
        self._name(name)
        if sep:
            return lambda values: values.get(name) == expected
        return lambda values: not _empty(values.get(name))

    def _translate(self, marker: str, node: dict[str, Any]) -> Node:
        column = self._name(node[marker])
        map_name = node.get("conceptmap") or self.column_maps.get(column)
        if map_name not in self.conceptmaps:
            raise TemplateError(f"{marker} {column!r}: no conceptmap {map_name!r}")
        conceptmap = self.conceptmaps[map_name]
        target, with_source, only_source = node.get("target"), node.get("source"), node.get("source_only")

        def of(concept: Concept) -> tuple[dict[str, str], ...]:
            if only_source:
                return (concept.source,)
            found = tuple(c for c in concept.targets if target is None or c["system"] == target)
            return (*found, concept.source) if with_source else found

        table = {code: of(concept) for code, concept in conceptmap.concepts.items()}  # the node's answer per code

        def codings(values: Values) -> tuple[dict[str, str], ...]:
            value = values.get(column)
            return () if value is None else table.get(to_text(value).casefold(), ())

        if marker == "$codings":
            return lambda values: list(codings(values)) or None
        if marker == "$coding":
            return lambda values: next(iter(codings(values)), None)
        return lambda values: next((c["code"] for c in codings(values)), None)


def _is_each(node: dict[str, Any]) -> bool:
    return "$each" in node or "$each_key" in node
