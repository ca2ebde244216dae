"""Validation against the biobank's FHIR profiles (profiles/) and the base R4 required bindings.

Why: base structural validation (fhir.resources) does not check code bindings, slices,
fixed values, extensions or invariants; this validator does, for the types the gateway
stores, and it is fast enough to run on every write (profiles compile once at load time).
Public API: :class:`ProfileValidator`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from gateway.fhir.definitions import required_bindings
from gateway.fhir.errors import Issue
from gateway.profiles.compiler import CompiledExtension, CompiledProfile, ProfileCompiler, base_binding_rules
from gateway.profiles.rules import ElementRule, Issues
from gateway.profiles.terminology import Terminology

PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"
STORED_TYPES = ("Specimen", "Consent", "ResearchStudy", "ResearchSubject", "Patient", "Group")

__all__ = ["PROFILES_DIR", "ProfileValidator"]


class ProfileValidator:
    """Checks resources against claimed (or requested) biobank profiles and base R4 required bindings."""

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self._resources = resources
        sds = [r for r in resources if r.get("resourceType") == "StructureDefinition"]
        profile_types = {sd["url"]: sd["type"] for sd in sds if sd.get("kind") == "resource"}
        compiler = ProfileCompiler(Terminology(resources), profile_types)
        self._extensions: dict[str, CompiledExtension] = {
            sd["url"]: compiler.extension(sd) for sd in sds if sd.get("type") == "Extension"
        }
        self._profiles: dict[str, CompiledProfile] = {
            sd["url"]: compiler.profile(sd) for sd in sds if sd.get("kind") == "resource"
        }
        bindings = required_bindings()
        self._base: dict[str, ElementRule] = {t: base_binding_rules(t, bindings) for t in STORED_TYPES}

    @classmethod
    def load(cls, profiles_dir: Path = PROFILES_DIR) -> ProfileValidator:
        return cls([orjson.loads(p.read_bytes()) for p in sorted(profiles_dir.glob("*.json"))])

    def conformance_resources(self) -> list[dict[str, Any]]:
        """Every conformance resource under profiles/ (for the server to serve)."""
        return list(self._resources)

    @property
    def profile_urls(self) -> list[str]:
        return list(self._profiles)

    @staticmethod
    def profiles_for(resource: dict[str, Any]) -> list[str]:
        """The profiles the resource claims in `meta.profile`."""
        meta = resource.get("meta")
        return list(meta.get("profile", [])) if isinstance(meta, dict) else []

    def validate(self, resource: dict[str, Any], profile: str | None = None) -> list[Issue]:
        """Issues for `resource`: base required bindings, known extensions, and each claimed profile plus `profile`."""
        issues: Issues = []
        type_name = resource.get("resourceType")
        if not isinstance(type_name, str):
            return [Issue("error", "structure", "resourceType is missing", ())]
        base = self._base.get(type_name)
        if base is not None:
            base.apply(resource, type_name, issues)
        self._check_extensions(resource, type_name, issues)
        claimed = self.profiles_for(resource)
        for url in dict.fromkeys([*claimed, *([profile] if profile else [])]):
            compiled = self._profiles.get(url.split("|")[0])
            if compiled is None:
                requested = url == profile
                issues.append(
                    Issue(
                        "error" if requested else "warning",
                        "not-supported" if not requested else "not-found",
                        f"profile {url} is not known to this server",
                        ("meta.profile",) if not requested else (),
                    )
                )
            elif compiled.type != type_name:
                issues.append(
                    Issue("error", "invalid", f"profile {url} is for {compiled.type}, not {type_name}", (type_name,))
                )
            else:
                compiled.check(resource, issues)
        return issues

    def _check_extensions(self, resource: dict[str, Any], type_name: str, issues: Issues) -> None:
        """Every extension whose definition we ship: right context, right value type and binding."""
        for ext, path, expr in _extensions(resource, type_name):
            compiled = self._extensions.get(ext.get("url"))
            if compiled is None:
                continue
            if path not in compiled.contexts:
                issues.append(
                    Issue(
                        "error",
                        "extension",
                        f"{expr}: extension {compiled.url} is not allowed on {path} "
                        f"(allowed on: {', '.join(sorted(compiled.contexts))})",
                        (expr,),
                    )
                )
            else:
                compiled.root.apply(ext, expr, issues)


def _extensions(resource: dict[str, Any], type_name: str) -> list[tuple[dict[str, Any], str, str]]:
    """(extension, element path without indexes, FHIRPath of the extension) for every extension in `resource`."""
    found: list[tuple[dict[str, Any], str, str]] = []

    def walk(node: dict[str, Any], path: str, expr: str) -> None:
        for key, value in node.items():
            if key == "extension" or key == "modifierExtension":
                if isinstance(value, list):
                    found.extend(
                        (ext, path, f"{expr}.{key}[{i}]") for i, ext in enumerate(value) if isinstance(ext, dict)
                    )
            elif isinstance(value, dict):
                name = key.lstrip("_")
                walk(value, f"{path}.{name}", f"{expr}.{name}")
            elif isinstance(value, list) and key != "contained":
                name = key.lstrip("_")
                for i, item in enumerate(value):
                    if isinstance(item, dict):
                        walk(item, f"{path}.{name}", f"{expr}.{name}[{i}]")

    walk(resource, type_name, type_name)
    return found
