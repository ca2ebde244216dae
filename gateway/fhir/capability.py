"""The CapabilityStatement, built from what the server really registered (never by hand)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TYPE_INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
                     "search-type")
SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system", "history-system")


@dataclass
class TypeCapability:
    type: str
    interactions: set[str] = field(default_factory=set)
    search_params: list[dict[str, str]] = field(default_factory=list)
    operations: list[dict[str, str]] = field(default_factory=list)
    profile: str | None = None
    supported_profiles: list[str] = field(default_factory=list)
    conditional: set[str] = field(default_factory=set)
    search_include: list[str] = field(default_factory=list)
    search_rev_include: list[str] = field(default_factory=list)


def capability_statement(*, base_url: str, software_version: str, types: list[TypeCapability],
                         system_interactions: set[str], system_operations: list[dict[str, str]],
                         security: dict[str, Any] | None, date: str,
                         system_search_params: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """`system_search_params`: the parameters of a search across all types (`rest.searchParam`)."""
    resources = []
    for t in sorted(types, key=lambda t: t.type):
        entry: dict[str, Any] = {"type": t.type}
        if t.profile:
            entry["profile"] = t.profile
        if t.supported_profiles:
            entry["supportedProfile"] = t.supported_profiles
        entry["interaction"] = [{"code": c} for c in TYPE_INTERACTIONS if c in t.interactions]
        entry["versioning"] = "versioned-update"
        entry["readHistory"] = "vread" in t.interactions
        entry["updateCreate"] = "update" in t.interactions
        entry["conditionalCreate"] = "create" in t.conditional
        entry["conditionalRead"] = "not-match" if "read" in t.conditional else "not-supported"
        entry["conditionalUpdate"] = "update" in t.conditional
        entry["conditionalDelete"] = "single" if "delete" in t.conditional else "not-supported"
        if t.search_include:
            entry["searchInclude"] = t.search_include
        if t.search_rev_include:
            entry["searchRevInclude"] = t.search_rev_include
        if t.search_params:
            entry["searchParam"] = t.search_params
        if t.operations:
            entry["operation"] = t.operations
        resources.append(entry)
    rest: dict[str, Any] = {"mode": "server"}
    if security:
        rest["security"] = security
    rest["resource"] = resources
    rest["interaction"] = [{"code": c} for c in SYSTEM_INTERACTIONS if c in system_interactions]
    if system_search_params:
        rest["searchParam"] = system_search_params
    if system_operations:
        rest["operation"] = system_operations
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "Biobank FHIR Gateway",
        "kind": "instance",
        "software": {"name": "biobank-gateway", "version": software_version},
        "implementation": {"description": "Biobank FHIR Gateway", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [rest],
    }
