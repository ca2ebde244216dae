"""A kick-off request, parsed and checked before any job exists (Bulk Data IG v2, "Query Parameters").

Everything a client can get wrong is answered at kick-off with 400 (or 403 for scopes), so
a job that starts can only fail for reasons of the server. The parsed request is stored
with the job as JSON: the runner needs nothing from the HTTP request.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal
from urllib.parse import parse_qsl

from gateway.access.principal import Principal
from gateway.access.scopes import READ
from gateway.fhir.errors import FhirError, Issue
from gateway.fhir.instant import parse_instant
from gateway.served import OWNED_TYPES, STORED_TYPES

Kind = Literal["system", "patient", "group"]

OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
COMPARTMENT_TYPES: tuple[str, ...] = ("Patient", "Specimen", "Consent", "ResearchSubject")
"""Stored types in the Patient compartment (gateway.fhir.compartment): what Patient and Group export cover."""
SYSTEM_DEFAULT_TYPES: tuple[str, ...] = tuple(t for t in OWNED_TYPES if t != "AuditEvent")
"""A system export without `_type`: the biobank's own data. AuditEvents only when asked for by name —
every export writes one, so including them by default would make no two exports alike."""

_FILTER_START = re.compile(r",(?=[A-Z][A-Za-z]+\?)")
_ELEMENT = re.compile(r"^(?:([A-Z][A-Za-z]+)\.)?([a-z][A-Za-z0-9]*)$")


def _bad(text: str, param: str) -> FhirError:
    return FhirError.of(400, "invalid", text, (param,))


@dataclass(frozen=True)
class ExportRequest:
    """What to export: `types` in order, each with its `_typeFilter` queries (alternatives, OR)."""

    kind: Kind
    url: str
    types: tuple[str, ...]
    since_us: int | None = None
    type_filters: dict[str, list[list[tuple[str, str]]]] = field(default_factory=dict)
    elements: tuple[tuple[str | None, str], ...] = ()
    group_id: str | None = None
    patients: tuple[str, ...] | None = None
    warnings: tuple[str, ...] = ()
    explicit_types: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportRequest:
        return cls(
            kind=data["kind"], url=data["url"], types=tuple(data["types"]), since_us=data["since_us"],
            type_filters={t: [[(k, v) for k, v in q] for q in qs] for t, qs in data["type_filters"].items()},
            elements=tuple((t, e) for t, e in data["elements"]), group_id=data["group_id"],
            patients=tuple(data["patients"]) if data["patients"] is not None else None,
            warnings=tuple(data["warnings"]), explicit_types=data["explicit_types"],
        )


def _split(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _types(kind: Kind, values: list[str]) -> tuple[str, ...]:
    allowed = COMPARTMENT_TYPES if kind != "system" else tuple(sorted(STORED_TYPES))
    asked = list(dict.fromkeys(_split(values)))
    if not asked:
        return COMPARTMENT_TYPES if kind != "system" else SYSTEM_DEFAULT_TYPES
    unknown = [t for t in asked if t not in allowed]
    if unknown:
        where = "in the Patient compartment" if kind != "system" else "served here"
        raise _bad(f"_type {', '.join(unknown)}: not a resource type {where}; choose from {', '.join(allowed)}",
                   "_type")
    return tuple(asked)


def _type_filters(values: list[str], types: tuple[str, ...]) -> dict[str, list[list[tuple[str, str]]]]:
    out: dict[str, list[list[tuple[str, str]]]] = {}
    for value in values:
        for query in _FILTER_START.split(value):
            type_, sep, text = query.partition("?")
            if not sep or not text:
                raise _bad(f"_typeFilter {query!r} is not a FHIR search query such as Specimen?status=available",
                           "_typeFilter")
            if type_ not in types:
                raise _bad(f"_typeFilter names {type_}, which this export does not include", "_typeFilter")
            out.setdefault(type_, []).append(parse_qsl(text, keep_blank_values=True))
    return out


def _elements(values: list[str]) -> tuple[tuple[str | None, str], ...]:
    out = []
    for item in _split(values):
        m = _ELEMENT.match(item)
        if not m:
            raise _bad(f"_elements {item!r}: give element names, optionally prefixed by a type (Specimen.status)",
                       "_elements")
        out.append((m.group(1), m.group(2)))
    return tuple(out)


def _since(values: list[str]) -> int | None:
    if not values:
        return None
    try:
        return parse_instant(values[-1])
    except ValueError as exc:
        raise _bad(f"_since must be a FHIR instant such as 2024-01-31T00:00:00Z, got {values[-1]!r}",
                   "_since") from exc


def _patients(values: list[str]) -> tuple[str, ...] | None:
    if not values:
        return None
    return tuple(sorted({v.rsplit("/", 1)[-1] for v in values if v}))


def parse(kind: Kind, url: str, params: list[tuple[str, str]], *, strict: bool,
          group_id: str | None = None) -> ExportRequest:
    """The request of `params` (query string or Parameters, flattened to name/value pairs)."""
    by_name: dict[str, list[str]] = {}
    for name, value in params:
        by_name.setdefault(name, []).append(value)
    for fmt in by_name.get("_outputFormat", []):
        if fmt not in OUTPUT_FORMATS:
            raise _bad(f"_outputFormat {fmt!r} is not supported: use application/fhir+ndjson", "_outputFormat")
    warnings = []
    # No associated data is produced here (Provenance is not linked to exported resources in this store):
    # refused under handling=strict, else ignored and reported in the manifest's error array (IG v2).
    for code in _split(by_name.get("includeAssociatedData", [])):
        text = f"includeAssociatedData={code} is not supported by this server and was ignored"
        if strict:
            raise FhirError.of(400, "not-supported", text, ("includeAssociatedData",))
        warnings.append(text)
    if "patient" in by_name and kind == "system":
        raise _bad("the patient parameter applies to Patient and Group export only", "patient")
    types = _types(kind, by_name.get("_type", []))
    return ExportRequest(kind=kind, url=url, types=types, since_us=_since(by_name.get("_since", [])),
                         type_filters=_type_filters(by_name.get("_typeFilter", []), types),
                         elements=_elements(by_name.get("_elements", [])), group_id=group_id,
                         patients=_patients(by_name.get("patient", [])), warnings=tuple(warnings),
                         explicit_types=bool(_split(by_name.get("_type", []))))


def authorise(principal: Principal, request: ExportRequest) -> ExportRequest:
    """The request narrowed to what the principal may export, or 403.

    Read scopes of the right context are needed on every exported type: `system/` for system
    and Group export, `user/` or `system/` for Patient export (INTERFACES.md). Types named in
    `_type` must all be granted; without `_type` the export covers the granted ones (IG v2).
    """
    contexts = ("system", "user") if request.kind == "patient" else ("system",)
    granted = [t for t in request.types if any(s.context in contexts for s in principal.scopes.granting(t, READ))]
    missing = [t for t in request.types if t not in granted]
    if (missing and request.explicit_types) or not granted:
        raise FhirError.of(
            403, "forbidden",
            f"insufficient_scope: {request.kind} export needs {' or '.join(c + '/' for c in contexts)} read scopes on "
            f"every exported type; missing for {', '.join(missing)}",
            headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'})
    return replace(request, types=tuple(granted))


def warning_outcomes(request: ExportRequest) -> list[dict[str, Any]]:
    """The OperationOutcomes of the manifest's `error` array for what was accepted but ignored."""
    return [{"resourceType": "OperationOutcome", "issue": [Issue("warning", "not-supported", w).to_json()]}
            for w in request.warnings]
