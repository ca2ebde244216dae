"""`for_each:` sources — what turns one case template into a case per declaration of the target.

Why: "every declared interaction and search parameter really works" can only be written
as data once per kind of declaration; the target's CapabilityStatement decides how many
cases there are. Each generator yields the variables of one case; a variable left None
makes the case skip with the reason in `why`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from gateway.conformance import searchvalues
from gateway.conformance.samples import Samples
from gateway.conformance.target import Target

Vars = dict[str, Any]
Generator = Callable[[Target, Samples, str], Iterator[Vars]]

INSTANCE_INTERACTIONS = {"read", "vread", "update", "patch", "delete", "history-instance"}


def _new_body(sample: dict[str, Any]) -> dict[str, Any]:
    """A copy of a sample without its server-assigned identity: what a create sends."""
    body = {k: v for k, v in sample.items() if k not in ("id", "meta", "text")}
    profiles = (sample.get("meta") or {}).get("profile")
    return {**body, "meta": {"profile": profiles}} if profiles else body


def _instance_vars(samples: Samples, type_: str) -> Vars:
    sample = samples.sample(type_)
    if sample is None:
        return {"id": None, "vid": None, "resource": None, "new_resource": None,
                "why": f"no {type_} on the target to test with (read-only run on an empty server?)"}
    return {"id": sample["id"], "vid": str((sample.get("meta") or {}).get("versionId") or "") or None,
            "resource": sample, "new_resource": _new_body(sample),
            "why": f"{type_}/{sample['id']} has no meta.versionId"}


def interaction(target: Target, samples: Samples, code: str) -> Iterator[Vars]:
    """Every type declaring interaction `code`; instance-level ones come with a sample's id."""
    for resource in target.resources:
        type_ = resource["type"]
        if target.declares(type_, code):
            extra = _instance_vars(samples, type_) if code in INSTANCE_INTERACTIONS | {"create"} else {}
            yield {"type": type_, "interaction": code, **extra}


def undeclared(target: Target, samples: Samples, code: str) -> Iterator[Vars]:
    """Every readable type that does not declare interaction `code`: the server must refuse it."""
    for resource in target.resources:
        type_ = resource["type"]
        if target.declares(type_, "read") and not target.declares(type_, code):
            yield {"type": type_, "interaction": code, **_instance_vars(samples, type_)}


def search_param(target: Target, samples: Samples, _: str) -> Iterator[Vars]:
    """Every declared search parameter, with a value that must find the sample and one that must not."""
    for resource in target.resources:
        type_ = resource["type"]
        for declared in resource.get("searchParam") or []:
            code = declared.get("name", "")
            if code in searchvalues.UNTESTABLE:
                continue
            sample, found = _valued_sample(target, samples, type_, declared)
            anchor = [("_id", sample["id"])] if sample and code != "_id" else []
            yield {"type": type_, "param": code, "param_type": declared.get("type", ""),
                   "id": sample["id"] if sample else None,
                   "accept_query": [(code, found.miss)],
                   "miss_query": [(code, found.miss), *anchor] if sample else None,
                   "match_query": [(code, found.match), *anchor] if found.match is not None else None,
                   "why": found.why or f"no {type_} on the target to search for"}


def _valued_sample(target: Target, samples: Samples, type_: str,
                   declared: dict[str, Any]) -> tuple[dict[str, Any] | None, searchvalues.Values]:
    """The first candidate resource that holds a value for the parameter (else the sample, with why not)."""
    candidates = samples.candidates(type_)
    for candidate in candidates:
        found = searchvalues.values(target, type_, declared, candidate)
        if found.match is not None:
            return candidate, found
    sample = candidates[0] if candidates else None
    return sample, searchvalues.values(target, type_, declared, sample)


def search_include(target: Target, samples: Samples, _: str) -> Iterator[Vars]:
    """Every declared `_include` / `_revinclude` value."""
    for resource in target.resources:
        for key, param in (("searchInclude", "_include"), ("searchRevInclude", "_revinclude")):
            for value in resource.get(key) or []:
                yield {"type": resource["type"], "include_param": param, "include": value}


def operation(target: Target, samples: Samples, name: str) -> Iterator[Vars]:
    """Every type declaring operation `name` (without `$`)."""
    for resource in target.resources:
        if name in target.operations(resource["type"]):
            yield {"type": resource["type"], "operation": name}


def listable_type(target: Target, samples: Samples, _: str) -> Iterator[Vars]:
    """Every type whose resources can be listed — by search, else by type history — with the listing path."""
    for resource in target.resources:
        type_ = resource["type"]
        if target.declares(type_, "search-type"):
            yield {"type": type_, "listing": f"{type_}?_count=50"}
        elif target.declares(type_, "history-type"):
            yield {"type": type_, "listing": f"{type_}/_history?_count=50"}


GENERATORS: dict[str, Generator] = {
    "interaction": interaction, "undeclared": undeclared, "search-param": search_param,
    "search-include": search_include, "operation": operation, "listable-type": listable_type,
}


def expand(spec: str, target: Target, samples: Samples) -> Iterator[Vars]:
    """`for_each: name` or `for_each: name:argument`."""
    name, _, argument = spec.partition(":")
    if name not in GENERATORS:
        raise KeyError(f"for_each {spec!r}: unknown generator; known: {sorted(GENERATORS)}")
    return GENERATORS[name](target, samples, argument)
