"""Factories for the per-value checks of an element rule: fixed, pattern, binding, reference target.

Each factory runs once at load time and returns a closure `(value, expression, issues)`.
Issue codes come from the R4 issue-type value set: `value` for fixed/pattern mismatches,
`code-invalid` for codes outside a required binding, `structure` for a reference to a
resource type the profile does not allow.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.fhir.errors import Issue
from gateway.profiles.rules import Issues, ItemCheck


def fixed(expected: Any, element: str) -> ItemCheck:
    def check(value: Any, expr: str, issues: Issues) -> None:
        if value != expected:
            issues.append(
                Issue(
                    "error",
                    "value",
                    f"{expr}: {element} must be exactly {_show(expected)}, found {_show(value)}",
                    (expr,),
                )
            )

    return check


def pattern(expected: Any, element: str) -> ItemCheck:
    def check(value: Any, expr: str, issues: Issues) -> None:
        if not matches_pattern(expected, value):
            issues.append(
                Issue("error", "value", f"{expr}: {element} must match the pattern {_show(expected)}", (expr,))
            )

    return check


def matches_pattern(expected: Any, value: Any) -> bool:
    """FHIR pattern semantics: every property of the pattern is present with that value; list items match some item."""
    if isinstance(expected, dict):
        return isinstance(value, dict) and all(matches_pattern(v, value.get(k)) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(value, list) and all(any(matches_pattern(e, v) for v in value) for e in expected)
    return expected == value


def binding(type_code: str, members: frozenset[tuple[str, str]], value_set: str) -> ItemCheck:
    """A required binding on a code, Coding or CodeableConcept (one coding from the value set suffices)."""
    codes = frozenset(code for _, code in members)

    def diagnostics(expr: str, shown: str) -> str:
        return f"{expr}: {shown} is not in the required value set {value_set}"

    if type_code == "code":

        def check_code(value: Any, expr: str, issues: Issues) -> None:
            if value not in codes:
                issues.append(Issue("error", "code-invalid", diagnostics(expr, repr(value)), (expr,)))

        return check_code
    if type_code == "Coding":

        def check_coding(value: Any, expr: str, issues: Issues) -> None:
            if isinstance(value, dict) and (value.get("system"), value.get("code")) not in members:
                issues.append(
                    Issue(
                        "error",
                        "code-invalid",
                        diagnostics(expr, f"{value.get('system')}|{value.get('code')}"),
                        (expr,),
                    )
                )

        return check_coding

    def check_concept(value: Any, expr: str, issues: Issues) -> None:
        codings = value.get("coding", []) if isinstance(value, dict) else []
        if not any((c.get("system"), c.get("code")) in members for c in codings if isinstance(c, dict)):
            shown = (
                ", ".join(f"{c.get('system')}|{c.get('code')}" for c in codings if isinstance(c, dict)) or "no coding"
            )
            issues.append(Issue("error", "code-invalid", diagnostics(expr, shown), (expr,)))

    return check_concept


def base_binding(type_codes: list[str], codes: frozenset[str], systems: frozenset[str], value_set: str) -> ItemCheck:
    """A base R4 required binding from required-bindings.json (plain code lists per value set)."""
    members = frozenset((s, c) for s in systems for c in codes)
    type_code = type_codes[0] if len(type_codes) == 1 else "code"
    return binding(type_code, members, value_set)


def reference_target(types: frozenset[str]) -> ItemCheck:
    """A literal reference `Type/id` (relative or absolute) must name one of the allowed types."""

    def check(value: Any, expr: str, issues: Issues) -> None:
        ref = value.get("reference") if isinstance(value, dict) else None
        if not isinstance(ref, str) or ref.startswith("#"):
            return
        parts = ref.split("/_history/")[0].rstrip("/").split("/")
        if len(parts) < 2 or parts[-2] not in types:
            issues.append(
                Issue(
                    "error",
                    "structure",
                    f"{expr}.reference: {ref!r} must refer to {' or '.join(sorted(types))}",
                    (f"{expr}.reference",),
                )
            )

    return check


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
