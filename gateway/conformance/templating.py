"""`${name}` placeholders in suite data, filled from a case's variables.

Why `${...}`: FHIR JSON bodies and FHIRPath both use `{}` themselves. A string that is a
single placeholder keeps the variable's own type (a list stays a list).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class MissingVariable(KeyError):
    """A placeholder that no capture, generator or `let` has filled."""


def names_in(value: Any) -> set[str]:
    """Every placeholder name used anywhere in `value`."""
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(names_in(k) | names_in(v) for k, v in value.items())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(names_in(v) for v in value)) if value else set()
    return set()


def fill(value: Any, variables: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            return _lookup(whole.group(1), variables)
        return _PLACEHOLDER.sub(lambda m: str(_lookup(m.group(1), variables)), value)
    if isinstance(value, Mapping):
        return {fill(k, variables): fill(v, variables) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [fill(v, variables) for v in value]
    return value


def _lookup(name: str, variables: Mapping[str, Any]) -> Any:
    if name not in variables:
        raise MissingVariable(f"${{{name}}} is not set (known: {', '.join(sorted(variables)) or 'none'})")
    return variables[name]
