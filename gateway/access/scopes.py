"""SMART App Launch scopes, v1 and v2, parsed by one module.

v1: `patient/*.read`, `user/Specimen.write`, `system/*.*`.
v2: `patient/Specimen.rs`, `system/*.cruds`, granular `patient/Observation.rs?category=laboratory`.
Every scope becomes (context, type, set of c/r/u/d/s letters, granular constraints):
v1 `read` is `rs`, `write` is `cud`, `*` is `cruds` (SMART 2.0, "scopes for requesting FHIR resources").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)(?:\?(.+))?$")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}

READ, SEARCH, CREATE, UPDATE, DELETE = "r", "s", "c", "u", "d"


@dataclass(frozen=True, slots=True)
class ResourceScope:
    context: str
    type: str
    actions: frozenset[str]
    constraints: tuple[tuple[str, str], ...] = ()

    def covers(self, type_: str, action: str) -> bool:
        return (self.type == "*" or self.type == type_) and action in self.actions


def parse_scope(text: str) -> ResourceScope | None:
    """A resource scope, or None for other scopes (launch, openid, offline_access, ...)."""
    m = _SCOPE.match(text)
    if not m or not m.group(3):
        return None
    context, type_, perm, query = m.groups()
    actions = frozenset(_V1.get(perm, perm))
    return ResourceScope(context, type_, actions, tuple(parse_qsl(query)) if query else ())


@dataclass(frozen=True, slots=True)
class Scopes:
    """A token's granted scopes, with the questions the access layer asks of them."""

    raw: tuple[str, ...]
    resources: tuple[ResourceScope, ...] = field(default=())
    _answers: dict[tuple[str, str, str], bool] = field(default_factory=dict, compare=False, hash=False, repr=False)
    """`allows` and `patient_only` per (question, type, action): a token's scopes never change, and
    every request asks the same few questions of them (the verifier caches the principal)."""

    @classmethod
    def parse(cls, text: str | list[str] | tuple[str, ...]) -> Scopes:
        items = tuple(text.split()) if isinstance(text, str) else tuple(text)
        return cls(items, tuple(s for s in map(parse_scope, items) if s is not None))

    def __str__(self) -> str:
        return " ".join(self.raw)

    def allows(self, type_: str, action: str) -> bool:
        answer = self._answers.get(("allows", type_, action))
        if answer is None:
            answer = self._answers["allows", type_, action] = any(s.covers(type_, action) for s in self.resources)
        return answer

    def granting(self, type_: str, action: str) -> list[ResourceScope]:
        return [s for s in self.resources if s.covers(type_, action)]

    def patient_only(self, type_: str, action: str) -> bool:
        """True when every scope granting this is a `patient/` one: the compartment confines it."""
        answer = self._answers.get(("patient_only", type_, action))
        if answer is None:
            granting = self.granting(type_, action)
            answer = self._answers["patient_only", type_, action] = bool(granting) and all(
                s.context == "patient" for s in granting)
        return answer

    def constraints(self, type_: str, action: str) -> list[tuple[tuple[str, str], ...]] | None:
        """Granular v2 constraints as alternatives (OR); None when one granting scope is unconstrained."""
        granting = self.granting(type_, action)
        if any(not s.constraints for s in granting):
            return None
        return [s.constraints for s in granting]

    def readable_types(self, types: frozenset[str]) -> frozenset[str]:
        return frozenset(t for t in types if self.allows(t, READ) or self.allows(t, SEARCH))

    def is_subset_of(self, other: Scopes) -> bool:
        """Every resource scope here is covered by one of `other`'s (refresh and token requests never escalate)."""
        for s in self.resources:
            ok = any(
                o.context == s.context and (o.type == "*" or o.type == s.type) and s.actions <= o.actions
                and (not o.constraints or o.constraints == s.constraints)
                for o in other.resources
            )
            if not ok:
                return False
        return set(x for x in self.raw if parse_scope(x) is None) <= set(other.raw)
