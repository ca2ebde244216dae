"""Search values taken from a real resource: one that must find it, one that must not.

Why two: a lenient server answers 200 to a parameter it silently ignores. Searching the
sample's own id together with a value that cannot match it proves the parameter was
applied — if the sample still comes back, the declaration is false.
The parameter's FHIRPath comes from the R4 definitions shipped with the gateway, else from
the target's own SearchParameter resource (custom parameters).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from gateway.conformance import fhirpath
from gateway.conformance.target import Target
from gateway.fhir.definitions import search_parameters

UNTESTABLE = {"_content", "_text", "_has", "_type", "_list", "_query", "_filter", "_containedType", "_contained"}
"""Result or special parameters with no element to take a value from."""
_RESOLVE_IS = re.compile(r"\.where\(resolve\(\) is (\w+)\)")


@dataclass(frozen=True)
class Values:
    match: str | None
    miss: str
    why: str = ""
    """Why there is no `match` value."""


@cache
def _r4_by_url() -> dict[str, dict[str, Any]]:
    return {p["url"]: p for p in search_parameters()}


@cache
def _r4_by_code() -> dict[tuple[str, str], dict[str, Any]]:
    return {(base, p["code"]): p for p in search_parameters() for base in p.get("base", [])}


def expression(target: Target, type_: str, declared: dict[str, Any]) -> str | None:
    code, url = declared.get("name", ""), declared.get("definition")
    found = _r4_by_url().get(url or "") or _r4_by_code().get((type_, code)) or _r4_by_code().get(("Resource", code))
    if found is None and url and target.declares("SearchParameter", "search-type"):
        bundle = target.get_json("SearchParameter", [("url", url)])
        entries = [e.get("resource") or {} for e in (bundle or {}).get("entry") or []]
        found = next((r for r in entries if r.get("url") == url), None)
    return found.get("expression") if found else None


def values(target: Target, type_: str, declared: dict[str, Any], sample: dict[str, Any] | None) -> Values:
    kind = declared.get("type", "")
    miss = _miss(kind)
    if sample is None:
        return Values(None, miss, f"no {type_} on the target to take a {declared.get('name')} value from")
    path = expression(target, type_, declared)
    if not path:
        known = f"{type_}.{declared.get('name')} ({declared.get('definition')})"
        return Values(None, miss, f"no FHIRPath known for {known}")
    path, target_types = _without_resolve(path)
    try:
        found = [v for v in fhirpath.evaluate(sample, path) if v not in (None, "", [], {})]
    except ValueError as exc:
        return Values(None, miss, str(exc))
    for item in found:
        if target_types and not _refers_to(item, target_types):
            continue
        value = _format(kind, item)
        if value is not None:
            return Values(value[0], value[1] or miss)
    return Values(None, miss, f"{type_}/{sample.get('id')} has no {kind} value at {path}")


def _without_resolve(path: str) -> tuple[str, set[str]]:
    """`X.subject.where(resolve() is Patient)` -> (`X.subject`, {"Patient"}): fhirpathpy cannot resolve,
    but the reference's own type prefix says the same."""
    types = set(_RESOLVE_IS.findall(path))
    return _RESOLVE_IS.sub("", path), types


def _refers_to(item: Any, types: set[str]) -> bool:
    reference = item.get("reference", "") if isinstance(item, dict) else ""
    return isinstance(reference, str) and "/" in reference and reference.rstrip("/").split("/")[-2] in types


def _miss(kind: str) -> str:
    """A value of the right syntax that no real resource holds."""
    marker = f"conformance-none-{uuid.uuid4().hex[:12]}"
    return {"date": "1801-01-01", "number": "-987654321", "quantity": "-987654321",
            "uri": f"urn:uuid:{uuid.uuid4()}", "token": f"urn:conformance:none|{marker}",
            "reference": f"Basic/{marker}"}.get(kind, marker)


def _format(kind: str, item: Any) -> tuple[str, str | None] | None:
    """(match value, miss value or None for the default) for one element value."""
    return {"token": _token, "string": _string, "date": _date, "reference": _reference, "quantity": _quantity,
            "number": _number, "uri": _uri}.get(kind, lambda _: None)(item)


def _token(item: Any) -> tuple[str, str | None] | None:
    if isinstance(item, bool):
        return ("true", "false") if item else ("false", "true")
    if isinstance(item, str):
        return item, None
    if not isinstance(item, dict):
        return None
    coding = next((c for c in item.get("coding") or [] if c.get("code")), None) if "coding" in item else item
    if coding and coding.get("code"):
        return (f"{coding['system']}|{coding['code']}" if coding.get("system") else str(coding["code"])), None
    if item.get("value"):
        return (f"{item['system']}|{item['value']}" if item.get("system") else str(item["value"])), None
    return None


def _string(item: Any) -> tuple[str, str | None] | None:
    if isinstance(item, str):
        return item, None
    if isinstance(item, dict):
        for key in ("family", "text", "city", "value", "display"):
            if isinstance(item.get(key), str):
                return item[key], None
        for key in ("given", "line"):
            if item.get(key):
                return str(item[key][0]), None
    return None


def _date(item: Any) -> tuple[str, str | None] | None:
    if isinstance(item, dict):
        if item.get("start"):
            return f"ge{item['start']}", None
        if item.get("end"):
            return f"le{item['end']}", "ge2999-12-31"
        return None
    return str(item), None


def _reference(item: Any) -> tuple[str, str | None] | None:
    if isinstance(item, dict) and isinstance(item.get("reference"), str) and "/" in item["reference"]:
        reference = item["reference"]
        type_ = reference.rstrip("/").split("/")[-2]
        return reference, f"{type_}/conformance-none-{uuid.uuid4().hex[:12]}"
    return None


def _quantity(item: Any) -> tuple[str, str | None] | None:
    if isinstance(item, dict) and item.get("value") is not None:
        unit = f"|{item.get('system', '')}|{item['code']}" if item.get("code") else ""
        return f"{item['value']}{unit}", f"-987654321{unit}"
    return None


def _number(item: Any) -> tuple[str, str | None] | None:
    return (str(item), None) if isinstance(item, int | float) and not isinstance(item, bool) else None


def _uri(item: Any) -> tuple[str, str | None] | None:
    return (item, None) if isinstance(item, str) else None
