"""Walking the references of a resource (for `urn:uuid:` resolution in transactions)."""

from __future__ import annotations

from typing import Any


def rewrite_references(value: Any, mapping: dict[str, str]) -> Any:
    """A copy of `value` with every `reference` found in `mapping` replaced (e.g. urn:uuid -> Type/id)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and item in mapping:
                out[key] = mapping[item]
            else:
                out[key] = rewrite_references(item, mapping)
        return out
    if isinstance(value, list):
        return [rewrite_references(item, mapping) for item in value]
    return value
