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
per-type element rules are plain dict lookups, and need a parsed resource only when one of
their elements can be there: a key is in those bytes as `"<name>":` (orjson writes no space
and never escapes the ASCII of an element name), so a resource without any of them, and
without a rule acting anywhere, leaves as it is stored, unparsed (`Plan.changes`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import orjson
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
    out = [_Rule("system", s, _written(s)) for s in sorted(r.identifier_systems)]
    out += [_Rule("extension", u, _written(u)) for u in sorted(r.extensions)]
    if not genetic_allowed:
        out += [_Rule("genetic", u, _written(u)) for u in sorted(r.genetic_extensions)]
    if renaming:
        out += [_Rule("reference", r.subject_type, _written(f"{r.subject_type}/")),
                _Rule("identifier", r.subject_system, _written(r.subject_system))]
    return tuple(out)


def _written(value: str) -> bytes:
    """`value` as it is in orjson's output of a string holding it (without the quotes)."""
    return orjson.dumps(value)[1:-1]


@cache
def _subject_reference() -> re.Pattern[bytes]:
    """`"reference":"[base/]<subject type>/<id>[/_history/<v>]"` in orjson's output: group 2 is the subject
    code. Exact there: a JSON key is never inside a string, whose quotes would be escaped."""
    kind = re.escape(rules().subject_type.encode())
    return re.compile(rb'("reference":"(?:[^"\\]*/)?' + kind + rb'/)([A-Za-z0-9\-.]{1,64})((?:/_history/[^"\\/]*)?")')


def rename_references(data: bytes, rename: Rename) -> bytes:
    """References to subjects in serialised resources (orjson's output), renamed: done on the bytes,
    because walking a whole resource for its one subject reference costs more than the rest of the gate."""
    return _subject_reference().sub(lambda m: m[1] + rename(m[2].decode()).encode() + m[3], data)


@dataclass(frozen=True, slots=True)
class Plan:
    """The rules that apply to one resource (see `plan`)."""

    rtype: str
    systems: frozenset[str]
    urls: frozenset[str]
    genetic: frozenset[str]
    paths: tuple[tuple[str, tuple[str, ...]], ...]
    """(first element, the rest of the path) of each element removed."""
    years: tuple[str, ...]
    references: bool
    """With renaming: the resource refers to subjects (renamed by `rename_references` once serialised)."""
    identifiers: bool
    """With renaming: the resource has identifiers of the subject-code system, or is a subject."""
    keys: tuple[bytes, ...]
    """`"<name>":` for every year and the last name of every path: a resource whose bytes hold none of them
    has none of those elements, which `paths` and `years` need to change anything."""
    needles: tuple[bytes, ...]
    """The strings of `systems` and `urls` as they are in stored bytes (see `_Walk.left`); empty when one
    holds a brace, which a count over a removed element's bytes could then not be trusted for."""
    walks: bool
    """Whether a rule acting anywhere applies (a walk, or renamed references)."""

    def changes(self, source: bytes) -> bool:
        """Whether `apply` may change the resource stored as `source` (this plan's bytes); False: it would
        leave it as it is, so it need not be parsed. Nothing but `paths` and `years` can act without `walks`,
        and they act only on elements that are there, whose keys are in `source` verbatim."""
        return self.walks or any(key in source for key in self.keys)

    def apply(self, resource: dict[str, Any], rename: Rename | None = None, source: bytes | None = None) -> bool:
        """Change `resource` in place; True when something changed. `rename`: with per-collaborator
        pseudonyms, the principal's name for a subject code — for the subject's logical id and
        identifiers of the subject-code system here, for references by `rename_references`. `source`:
        the bytes `resource` was parsed from (this plan's), which let the walk stop once it removed
        every occurrence of what it removes."""
        changed = rename is not None and self.references
        dropped: set[str] = set()
        if self.systems or self.urls or (self.identifiers and rename is not None):
            changed |= self._walk(resource, rename if self.identifiers else None, dropped, source)
        for first, rest in self.paths:
            if first in resource:
                if rest:
                    changed |= _remove_path(resource[first], rest)
                else:
                    del resource[first]
                    changed = True
        for element in self.years:
            value = resource.get(element)
            if isinstance(value, str) and len(value) > 4:
                resource[element] = value[:4]
                changed = True
        changed |= bool(dropped - self.genetic)
        if changed:
            _label(resource, PSEUDED)
        if dropped & self.genetic:
            _label(resource, REDACTED)
        return changed or bool(dropped)

    def _walk(self, resource: dict[str, Any], rename: Rename | None, dropped: set[str], source: bytes | None) -> bool:
        """The rules acting anywhere (`dropped`: the systems and URLs removed); True when a subject code was
        renamed."""
        r = rules()
        counted = source is not None and rename is None and bool(self.needles)
        left = _occurrences(source, self.needles) if counted else -1  # type: ignore[arg-type]
        walk = _Walk(self.systems, self.urls, rename, r.subject_system, dropped, self.needles, left)
        _visit(resource, walk)
        if rename is not None and self.rtype == r.subject_type and isinstance(resource.get("id"), str):
            resource["id"] = rename(resource["id"])
            walk.renamed = True
        return walk.renamed


@dataclass(slots=True)
class _Planner:
    """The plans of one (type, genetic_allowed, renaming): one per pattern of `needles` present, built once."""

    rtype: str
    renaming: bool
    rules: tuple[_Rule, ...]
    needles: tuple[bytes, ...]
    plans: dict[tuple[bool, ...], Plan] = field(default_factory=dict)

    def plan(self, source: bytes) -> Plan:
        """The plan of a resource stored as `source`."""
        return self.of(tuple([needle in source for needle in self.needles]))

    def of(self, present: tuple[bool, ...]) -> Plan:
        """The plan of resources holding the needles `present` (in the order of `needles`)."""
        found = self.plans.get(present)
        if found is None:
            found = self.plans[present] = self._build(present)
        return found

    def _build(self, present: tuple[bool, ...]) -> Plan:
        r = rules()
        found = [rule for rule, there in zip(self.rules, present, strict=True) if there]

        def values(kind: str) -> frozenset[str]:
            return frozenset(rule.value for rule in found if rule.kind == kind)

        genetic = values("genetic")
        paths = r.elements.get("*", ()) + r.elements.get(self.rtype, ())
        years = r.years_only.get(self.rtype, ())
        keys = tuple(dict.fromkeys(f'"{name}":'.encode() for name in (*years, *(p[-1] for p in paths))))
        needles = tuple(rule.needle for rule in found if rule.kind in ("system", "extension", "genetic"))
        if any(b"{" in needle or b"}" in needle for needle in needles):
            needles = ()
        systems, urls, references = values("system"), values("extension") | genetic, bool(values("reference"))
        identifiers = bool(values("identifier")) or (self.renaming and self.rtype == r.subject_type)
        return Plan(self.rtype, systems, urls, genetic, tuple((p[0], p[1:]) for p in paths), years, references,
                    identifiers, keys, needles, bool(systems or urls or references or identifiers))


@cache
def _planner(rtype: str, genetic_allowed: bool, renaming: bool) -> _Planner:
    """The plans of resources of `rtype` for such a principal (see `plan`)."""
    found = _rules_for(genetic_allowed, renaming)
    return _Planner(rtype, renaming, found, tuple(rule.needle for rule in found))


def plan(rtype: str, source: bytes | None, *, genetic_allowed: bool, renaming: bool) -> Plan:
    """The rules that apply to a resource of `rtype` stored as `source` (None: not stored here, all
    of them); genotyping details go unless `genetic_allowed`; subject ids are renamed if `renaming`."""
    plans = _planner(rtype, genetic_allowed, renaming)
    return plans.of((True,) * len(plans.needles)) if source is None else plans.plan(source)


@dataclass(slots=True)
class _Walk:
    """What one walk removes and renames, and what it did (`dropped`: systems and URLs removed)."""

    systems: frozenset[str]
    urls: frozenset[str]
    rename: Rename | None
    subject_system: str
    dropped: set[str]
    needles: tuple[bytes, ...]
    left: int
    """Occurrences of `needles` in the stored bytes outside what the walk removed so far (-1: not counted).
    At 0 nothing is left to remove and the walk stops: an identifier or extension it would remove holds its
    system or URL, and an element's bytes are a piece of the stored bytes (orjson's output is canonical),
    in which an occurrence of a needle without braces cannot straddle the element's edge."""
    renamed: bool = False

    def removed(self, items: list[Any]) -> None:
        """Count what `items`, about to be removed, held of `needles`."""
        if self.left > 0:
            for item in items:
                self.left -= _occurrences(orjson.dumps(item), self.needles)


def _occurrences(data: bytes, needles: tuple[bytes, ...]) -> int:
    found = 0
    for needle in needles:
        found += data.count(needle)
    return found


def _filter(node: dict[str, Any], key: str, field_: str, values: frozenset[str], walk: _Walk) -> None:
    """Remove from the list `node[key]` the dicts whose `field_` is in `values` (the key too when emptied)."""
    items = node[key]
    if not isinstance(items, list):
        return
    kept = []
    removed = []
    for item in items:
        if isinstance(item, dict) and item.get(field_) in values:
            removed.append(item)
            walk.dropped.add(item[field_])
        else:
            kept.append(item)
    if not removed:
        return
    walk.removed(removed)
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
            walk.removed([identifier])
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
    if "identifier" in node and (walk.systems or walk.rename is not None):
        _identifiers(node, walk)
    if walk.urls:
        if "extension" in node:
            _filter(node, "extension", "url", walk.urls, walk)
        if "modifierExtension" in node:
            _filter(node, "modifierExtension", "url", walk.urls, walk)
    if not walk.left:
        return
    for value in node.values():
        kind = value.__class__
        if kind is dict:
            _visit(value, walk)
        elif kind is list:
            for item in value:
                if item.__class__ is dict:
                    _visit(item, walk)


def _remove_path(node: Any, path: tuple[str, ...]) -> bool:
    """Remove `path` from `node` (through lists, in every item); True when something was removed."""
    if isinstance(node, list):
        removed = False
        for item in node:
            removed |= _remove_path(item, path)
        return removed
    if not isinstance(node, dict) or path[0] not in node:
        return False
    if len(path) == 1:
        del node[path[0]]
        return True
    return _remove_path(node[path[0]], path[1:])


def _label(resource: dict[str, Any], coding: dict[str, str]) -> None:
    security = resource.setdefault("meta", {}).setdefault("security", [])
    for label in security:
        if label.get("code") == coding["code"] and label.get("system") == coding["system"]:
            return
    security.append(dict(coding))
