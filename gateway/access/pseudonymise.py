"""Pseudonymisation for external principals, driven by privacy.yaml.

Applied by the egress gate to every resource an external principal receives, on every path.
What changed is labelled in `meta.security` (v3 ObservationValue PSEUDED / REDACTED) so a
collaborator can tell a pseudonymised copy from the source.

It runs on every entry of every page a collaborator gets, so it is built for speed
(bench/gate.py). The rules that act anywhere in a resource (identifier systems, extension
URLs, subject references) need a walk over all of it; `plan` keeps only those whose string
occurs in the bytes the resource is stored as — orjson's output, which escapes neither '/'
nor non-ASCII, so the string is there verbatim or not at all — and most resources are not
walked. When a walk is needed, one walk, into dicts and lists only, applies them all. The
per-type element rules are plain dict lookups.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
PSEUDED = {"system": OBSERVATION_VALUE, "code": "PSEUDED", "display": "pseudonymized"}
REDACTED = {"system": OBSERVATION_VALUE, "code": "REDACTED", "display": "redacted"}

Rename = Callable[[str], str]
"""Subject code -> the pseudonym this principal knows it by (per-collaborator pseudonyms)."""


@dataclass(frozen=True)
class PrivacyRules:
    identifier_systems: frozenset[str]
    extensions: frozenset[str]
    elements: dict[str, tuple[tuple[str, ...], ...]]
    years_only: dict[str, tuple[str, ...]]
    genetic_extensions: frozenset[str]
    subject_type: str
    subject_system: str

    @classmethod
    def load(cls, path: Path = Path(__file__).with_name("privacy.yaml")) -> PrivacyRules:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        subject = data["subject"]
        return cls(
            frozenset(data.get("identifier_systems_removed") or ()),
            frozenset(data.get("extensions_removed") or ()),
            {t: tuple(tuple(p.split(".")) for p in paths) for t, paths in (data.get("elements_removed") or {}).items()},
            {t: tuple(paths) for t, paths in (data.get("dates_truncated_to_year") or {}).items()},
            frozenset(data.get("genetic_extensions") or ()),
            subject["type"],
            subject["identifier_system"],
        )


@cache
def rules() -> PrivacyRules:
    return PrivacyRules.load()


@dataclass(frozen=True, slots=True)
class _Rule:
    """A rule acting anywhere in a resource, and the bytes stored content must contain for it to apply."""

    kind: str
    """system | extension | genetic | reference (to a subject) | identifier (of the subject-code system)"""
    value: str
    needle: bytes


@cache
def _rules_for(genetic_allowed: bool, renaming: bool) -> tuple[_Rule, ...]:
    """The rules acting anywhere that concern such a principal, in a fixed order."""
    r = rules()
    out = [_Rule("system", s, s.encode()) for s in sorted(r.identifier_systems)]
    out += [_Rule("extension", u, u.encode()) for u in sorted(r.extensions)]
    if not genetic_allowed:
        out += [_Rule("genetic", u, u.encode()) for u in sorted(r.genetic_extensions)]
    if renaming:
        out += [_Rule("reference", r.subject_type, f"{r.subject_type}/".encode()),
                _Rule("identifier", r.subject_system, r.subject_system.encode())]
    return tuple(out)


@cache
def _subject_reference() -> re.Pattern[bytes]:
    """`"reference":"[base/]<subject type>/<id>[/_history/<v>]"` in orjson's output: group 2 is the subject
    code. Exact there: a JSON key is never inside a string, whose quotes would be escaped."""
    kind = re.escape(rules().subject_type.encode())
    return re.compile(rb'("reference":"(?:[^"\\]*/)?' + kind + rb'/)([A-Za-z0-9\-.]{1,64})((?:/_history/[^"\\/]*)?")')


def rename_references(data: bytes, rename: Rename) -> bytes:
    """References to subjects in serialised resources (orjson's output), renamed: done on the bytes,
    because walking a whole resource for its one subject reference costs more than the rest of the gate."""
    return _subject_reference().sub(lambda m: m.group(1) + rename(m.group(2).decode()).encode() + m.group(3), data)


@dataclass(frozen=True, slots=True)
class Plan:
    """The rules that apply to one resource (see `plan`)."""

    rtype: str
    systems: frozenset[str]
    urls: frozenset[str]
    genetic: frozenset[str]
    paths: tuple[tuple[str, ...], ...]
    years: tuple[str, ...]
    references: bool
    """With renaming: the resource refers to subjects (renamed by `rename_references` once serialised)."""
    identifiers: bool
    """With renaming: the resource has identifiers of the subject-code system, or is a subject."""

    def apply(self, resource: dict[str, Any], rename: Rename | None = None) -> bool:
        """Change `resource` in place; True when something changed. `rename`: with per-collaborator
        pseudonyms, the principal's name for a subject code — for the subject's logical id and
        identifiers of the subject-code system here, for references by `rename_references`."""
        r = rules()
        walk = _Walk(self.systems, self.urls, rename if self.identifiers else None, r.subject_system)
        if walk.systems or walk.urls or walk.rename is not None:
            _visit(resource, walk)
        if walk.rename is not None and self.rtype == r.subject_type and isinstance(resource.get("id"), str):
            resource["id"] = walk.rename(resource["id"])
            walk.renamed = True
        changed = walk.renamed or (rename is not None and self.references) or bool(walk.dropped - self.genetic)
        for path in self.paths:
            if path[0] in resource:
                changed |= _remove_path(resource, path)
        for element in self.years:
            value = resource.get(element)
            if isinstance(value, str) and len(value) > 4:
                resource[element] = value[:4]
                changed = True
        if changed:
            _label(resource, PSEUDED)
        if walk.dropped & self.genetic:
            _label(resource, REDACTED)
        return changed or bool(walk.dropped)


@cache
def _plan(rtype: str, genetic_allowed: bool, renaming: bool, present: tuple[bool, ...]) -> Plan:
    """The plan with those of `_rules_for(...)` that are `present` (built once per pattern)."""
    r = rules()
    found = [rule for rule, there in zip(_rules_for(genetic_allowed, renaming), present, strict=True) if there]

    def values(kind: str) -> frozenset[str]:
        return frozenset(rule.value for rule in found if rule.kind == kind)

    genetic = values("genetic")
    return Plan(rtype, values("system"), values("extension") | genetic, genetic,
                r.elements.get("*", ()) + r.elements.get(rtype, ()), r.years_only.get(rtype, ()),
                bool(values("reference")), bool(values("identifier")) or (renaming and rtype == r.subject_type))


def plan(rtype: str, source: bytes | None, *, genetic_allowed: bool, renaming: bool) -> Plan:
    """The rules that apply to a resource of `rtype` stored as `source` (None: not stored here, all
    of them); genotyping details go unless `genetic_allowed`; subject ids are renamed if `renaming`."""
    present = tuple(source is None or rule.needle in source for rule in _rules_for(genetic_allowed, renaming))
    return _plan(rtype, genetic_allowed, renaming, present)


@dataclass(slots=True)
class _Walk:
    """What one walk removes and renames, and what it did (`dropped`: systems and URLs removed)."""

    systems: frozenset[str]
    urls: frozenset[str]
    rename: Rename | None
    subject_system: str
    dropped: set[str] = field(default_factory=set)
    renamed: bool = False


def _filter(node: dict[str, Any], key: str, field_: str, values: frozenset[str], walk: _Walk) -> None:
    """Remove from the list `node[key]` the dicts whose `field_` is in `values` (the key too when emptied)."""
    items = node[key]
    if not isinstance(items, list):
        return
    kept = [i for i in items if not (isinstance(i, dict) and i.get(field_) in values)]
    if len(kept) == len(items):
        return
    walk.dropped.update(i[field_] for i in items if isinstance(i, dict) and i.get(field_) in values)
    if kept:
        node[key] = kept
    else:
        del node[key]


def _identifiers(node: dict[str, Any], walk: _Walk) -> None:
    """`node.identifier` (a list, or a Reference's single one): hospital systems out, subject codes renamed."""
    identifier = node["identifier"]
    if isinstance(identifier, dict):
        if identifier.get("system") in walk.systems:
            walk.dropped.add(identifier["system"])
            del node["identifier"]
            return
        identifiers = [identifier]
    elif isinstance(identifier, list):
        if walk.systems:
            _filter(node, "identifier", "system", walk.systems, walk)
        identifiers = node.get("identifier") or []
    else:
        return
    if walk.rename is not None:
        for item in identifiers:
            if isinstance(item, dict) and item.get("system") == walk.subject_system \
                    and isinstance(item.get("value"), str):
                item["value"] = walk.rename(item["value"])
                walk.renamed = True


def _visit(node: dict[str, Any], walk: _Walk) -> None:
    """Remove hospital identifiers and listed extensions at any depth, rename subject-code identifiers."""
    if "identifier" in node:
        _identifiers(node, walk)
    if walk.urls:
        if "extension" in node:
            _filter(node, "extension", "url", walk.urls, walk)
        if "modifierExtension" in node:
            _filter(node, "modifierExtension", "url", walk.urls, walk)
    for value in node.values():
        kind = value.__class__
        if kind is dict:
            _visit(value, walk)
        elif kind is list:
            for item in value:
                if item.__class__ is dict:
                    _visit(item, walk)


def _remove_path(node: Any, path: tuple[str, ...]) -> bool:
    if isinstance(node, list):
        return any([_remove_path(item, path) for item in node])
    if not isinstance(node, dict) or path[0] not in node:
        return False
    if len(path) == 1:
        del node[path[0]]
        return True
    return _remove_path(node[path[0]], path[1:])


def _label(resource: dict[str, Any], coding: dict[str, str]) -> None:
    meta = resource.setdefault("meta", {})
    security = meta.setdefault("security", [])
    if not any(s.get("code") == coding["code"] and s.get("system") == coding["system"] for s in security):
        security.append(dict(coding))
