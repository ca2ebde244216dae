"""Index rows of a resource: each served parameter's FHIRPath values turned into table rows.

FHIRPath returns raw JSON (a CodeableConcept dict, a date string, a Period...), so the
datatype is recognised from the value's shape, the way the FHIR search spec maps each
datatype onto each parameter type (search.html#table). Values that do not fit a parameter's
type are skipped rather than failing the write: indexing never refuses a valid resource.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from gateway.search.params import Registry, SearchParam
from gateway.search.values import HIGHEST, LOWEST, date_range, local_reference, normalize

Row = tuple[Any, ...]
Rows = dict[str, list[Row]]
"""Rows per parameter kind (table), each `(param, *values)`."""

_CONTACT_SYSTEMS = {"phone", "fax", "email", "pager", "url", "sms", "other"}


def _text_of(value: dict[str, Any]) -> str | None:
    text = value.get("text") or value.get("display")
    return normalize(text) if isinstance(text, str) else None


def tokens(value: Any) -> Iterator[tuple[str, str, str | None]]:
    """(system, code, text) of a code, Coding, CodeableConcept, Identifier, ContactPoint or boolean."""
    if isinstance(value, bool):
        yield "", "true" if value else "false", None
    elif isinstance(value, str):
        yield "", value, None
    elif isinstance(value, dict):
        if isinstance(value.get("coding"), list):
            text = _text_of(value)
            for coding in value["coding"]:
                for system, code, own in tokens(coding):
                    yield system, code, own or text
            if not value["coding"] and text:
                yield "", "", text
        elif "code" in value:
            yield str(value.get("system") or ""), str(value["code"]), _text_of(value)
        elif "value" in value and value.get("system") in _CONTACT_SYSTEMS:
            yield "", str(value["value"]), None
        elif "value" in value:
            type_text = _text_of(value["type"]) if isinstance(value.get("type"), dict) else None
            yield str(value.get("system") or ""), str(value["value"]), type_text


def _strings(value: Any) -> Iterator[str]:
    """Every string of a string, HumanName or Address (all its parts, as FHIR string search says)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in ("use", "period", "extension", "id", "type"):
                yield from _strings(item)


def _dates(value: Any) -> Iterator[tuple[int, int]]:
    if isinstance(value, str):
        try:
            yield date_range(value)
        except ValueError:
            return
    elif isinstance(value, dict) and ("start" in value or "end" in value):
        try:
            lo = date_range(value["start"])[0] if value.get("start") else LOWEST
            hi = date_range(value["end"])[1] if value.get("end") else HIGHEST
        except ValueError:
            return
        yield lo, hi
    elif isinstance(value, dict) and isinstance(value.get("event"), list):  # Timing
        for event in value["event"]:
            yield from _dates(event)


def _references(value: Any) -> Iterator[tuple[str, str, str, str, str]]:
    """(ref_type, ref_id, url, identifier system, identifier value); canonical strings go to url."""
    if isinstance(value, str):
        yield "", "", value, "", ""
        return
    if not isinstance(value, dict):
        return
    ref = value.get("reference")
    ident = value.get("identifier") if isinstance(value.get("identifier"), dict) else {}
    local = local_reference(ref) if isinstance(ref, str) else None
    url = ref if isinstance(ref, str) and local is None and not ref.startswith("#") else ""
    if local or url or ident.get("value"):
        ref_type, ref_id = local or ("", "")
        yield ref_type, ref_id, url, str(ident.get("system") or ""), str(ident.get("value") or "")


def _numbers(value: Any) -> Iterator[float]:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        yield float(value)


def _quantities(value: Any) -> Iterator[tuple[float, str, str, str]]:
    if isinstance(value, dict) and isinstance(value.get("value"), (int, float, Decimal)):
        yield (float(value["value"]), str(value.get("system") or ""), str(value.get("code") or ""),
               str(value.get("unit") or ""))


def _rows(param: SearchParam, value: Any) -> Iterator[Row]:
    kind = param.kind
    if kind == "token":
        yield from tokens(value)
    elif kind == "string":
        yield from ((normalize(s)[:255], s[:255]) for s in _strings(value))
    elif kind == "date":
        yield from _dates(value)
    elif kind == "reference":
        yield from _references(value)
    elif kind == "quantity":
        yield from _quantities(value)
    elif kind == "number":
        yield from ((n,) for n in _numbers(value))
    elif kind == "uri" and isinstance(value, str):
        yield (value,)


def index_rows(registry: Registry, resource: dict[str, Any]) -> Rows:
    """Every index row of `resource`, by table kind, duplicates removed."""
    out: dict[str, dict[Row, None]] = {}
    for param in registry.indexed(resource.get("resourceType", "")):
        assert param.extract is not None
        try:
            values = param.extract(resource)
        except Exception:  # data the expression cannot evaluate (FHIRPath type errors) is not indexed
            continue
        bucket = out.setdefault(param.kind, {})
        for value in values:
            for row in _rows(param, value):
                bucket[(param.code, *row)] = None
    return {kind: list(rows) for kind, rows in out.items() if rows}
