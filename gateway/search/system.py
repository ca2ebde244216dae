"""Which types a system-level search (`GET [base]?_type=...`, http.html#search) searches.

`_type` names them (comma-separated, and may be repeated); without it, every stored type the
principal may read is searched, and types it may not read are simply not part of "the system"
it sees. Naming a type the principal may not read is refused (403 insufficient_scope), as the
type-level search of that type is: the client learns about its scopes, never about data. A type
this server does not store is an unknown parameter value: ignored with a warning under
`handling=lenient`, 400 under `strict`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.access.gate import Restriction
from gateway.fhir.errors import FhirError, Issue
from gateway.search.sql import insufficient_scope


@dataclass
class Types:
    """The searched types, the other parameters, and what became of `_type`."""

    types: list[str]
    params: list[tuple[str, str]]
    kept: list[tuple[str, str]] = field(default_factory=list)
    """`_type` as understood, for the links to repeat."""
    issues: list[Issue] = field(default_factory=list)


def searched_types(params: list[tuple[str, str]], stored: Iterable[str], restriction: Restriction,
                   strict: bool) -> Types:
    served = frozenset(stored)
    named: list[str] = []
    issues: list[Issue] = []
    rest = [(k, v) for k, v in params if k != "_type"]
    for value in (v for k, v in params if k == "_type" and v):
        for type_ in (t.strip() for t in value.split(",") if t.strip()):
            if type_ not in served:
                text = f"{type_} is not a resource type stored here (types owned by the hospital EHR are " \
                       "searched at their own endpoint)"
                if strict:
                    raise FhirError.of(400, "invalid", f"{text} (Prefer: handling=strict)", ("_type",))
                issues.append(Issue("warning", "not-supported", f"Ignored _type={type_}: {text}", ("_type",)))
            elif type_ not in restriction.readable:
                raise insufficient_scope(type_, "a system-level search (_type)")
            elif type_ not in named:
                named.append(type_)
    if named or issues:
        return Types(named, rest, [("_type", ",".join(named))] if named else [], issues)
    readable = sorted(t for t in served if t in restriction.readable)
    if not readable:
        raise insufficient_scope("any stored resource type", "a system-level search")
    return Types(readable, rest)
