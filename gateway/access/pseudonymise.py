"""Pseudonymisation for external principals, driven by privacy.yaml.

Applied by the egress gate to every resource an external principal receives, on every path.
What changed is labelled in `meta.security` (v3 ObservationValue PSEUDED / REDACTED) so a
collaborator can tell a pseudonymised copy from the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
PSEUDED = {"system": OBSERVATION_VALUE, "code": "PSEUDED", "display": "pseudonymized"}
REDACTED = {"system": OBSERVATION_VALUE, "code": "REDACTED", "display": "redacted"}


@dataclass(frozen=True)
class PrivacyRules:
    identifier_systems: frozenset[str]
    extensions: frozenset[str]
    elements: dict[str, tuple[tuple[str, ...], ...]]
    years_only: dict[str, tuple[str, ...]]
    genetic_extensions: frozenset[str]

    @classmethod
    def load(cls, path: Path = Path(__file__).with_name("privacy.yaml")) -> PrivacyRules:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return cls(
            frozenset(data.get("identifier_systems_removed") or ()),
            frozenset(data.get("extensions_removed") or ()),
            {t: tuple(tuple(p.split(".")) for p in paths) for t, paths in (data.get("elements_removed") or {}).items()},
            {t: tuple(paths) for t, paths in (data.get("dates_truncated_to_year") or {}).items()},
            frozenset(data.get("genetic_extensions") or ()),
        )


@cache
def rules() -> PrivacyRules:
    return PrivacyRules.load()


def _remove_path(node: Any, path: tuple[str, ...]) -> bool:
    if isinstance(node, list):
        return any([_remove_path(item, path) for item in node])
    if not isinstance(node, dict) or path[0] not in node:
        return False
    if len(path) == 1:
        del node[path[0]]
        return True
    return _remove_path(node[path[0]], path[1:])


def _drop_items(node: dict[str, Any], key: str, field: str, values: frozenset[str]) -> bool:
    """Remove from the list `node[key]` the items whose `field` is in `values` (the key too when emptied)."""
    items = node.get(key)
    if not isinstance(items, list):
        return False
    kept = [i for i in items if not (isinstance(i, dict) and i.get(field) in values)]
    if len(kept) == len(items):
        return False
    if kept:
        node[key] = kept
    else:
        del node[key]
    return True


def _scrub(node: Any, r: PrivacyRules, drop_extensions: frozenset[str]) -> bool:
    """Remove hospital identifiers and listed extensions at any depth; True when something went."""
    changed = False
    if isinstance(node, list):
        for item in node:
            changed |= _scrub(item, r, drop_extensions)
        return changed
    if not isinstance(node, dict):
        return False
    identifier = node.get("identifier")
    if isinstance(identifier, dict) and identifier.get("system") in r.identifier_systems:
        del node["identifier"]  # Reference.identifier
        changed = True
    changed |= _drop_items(node, "identifier", "system", r.identifier_systems)
    for key in ("extension", "modifierExtension"):
        changed |= _drop_items(node, key, "url", drop_extensions)
    for value in node.values():
        changed |= _scrub(value, r, drop_extensions)
    return changed


def _label(resource: dict[str, Any], coding: dict[str, str]) -> None:
    meta = resource.setdefault("meta", {})
    security = meta.setdefault("security", [])
    if not any(s.get("code") == coding["code"] and s.get("system") == coding["system"] for s in security):
        security.append(dict(coding))


def pseudonymise(resource: dict[str, Any], *, genetic_allowed: bool) -> dict[str, Any]:
    """Change `resource` in place for an external principal and return it."""
    r = rules()
    rtype = resource.get("resourceType", "")
    redacted = False
    if not genetic_allowed:
        redacted = _scrub(resource, r, r.genetic_extensions)
    changed = _scrub(resource, r, r.extensions)
    for path in r.elements.get("*", ()) + r.elements.get(rtype, ()):
        changed |= _remove_path(resource, path)
    for element in r.years_only.get(rtype, ()):
        value = resource.get(element)
        if isinstance(value, str) and len(value) > 4:
            resource[element] = value[:4]
            changed = True
    if changed:
        _label(resource, PSEUDED)
    if redacted:
        _label(resource, REDACTED)
    return resource
