"""FHIR ConceptMaps (mappings/conceptmaps/*.json) as lookup tables for the mapping engine.

A local code's valid spellings are the `element.code`s of a map: a code no group lists is
unknown and rejects the record. Codes match case-insensitively and come out in the map's
own spelling, so `wb` and `WB` both load as `WB`. Targets keep group order, which is how a
map says "SNOMED CT first, v2 0487 second".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson


@dataclass(frozen=True, slots=True)
class Concept:
    """A local code and where it translates to (`targets`: Coding dicts, in group order)."""

    code: str
    source: dict[str, str]
    targets: tuple[dict[str, str], ...]


@dataclass(frozen=True, slots=True)
class ConceptMap:
    name: str
    concepts: dict[str, Concept]

    def lookup(self, code: str) -> Concept | None:
        return self.concepts.get(code.casefold())


def read_conceptmap(path: Path) -> ConceptMap:
    resource = orjson.loads(path.read_bytes())
    sources: dict[str, dict[str, str]] = {}
    targets: dict[str, list[dict[str, str]]] = {}
    for group in resource["group"]:
        for element in group["element"]:
            code = element["code"]
            sources.setdefault(code, {"system": group["source"], "code": code})
            found = targets.setdefault(code, [])
            for target in element.get("target", ()):
                if target.get("equivalence") in ("unmatched", "disjoint") or "code" not in target:
                    continue
                coding = {"system": group["target"], "code": target["code"]}
                if "display" in target:
                    coding["display"] = target["display"]
                found.append(coding)
    concepts = {code.casefold(): Concept(code, sources[code], tuple(found)) for code, found in targets.items()}
    return ConceptMap(resource["id"], concepts)


def read_conceptmaps(folder: Path) -> dict[str, ConceptMap]:
    """Every `ConceptMap-<name>.json` of `folder`, by name."""
    maps = (read_conceptmap(path) for path in sorted(folder.glob("ConceptMap-*.json")))
    return {cm.name: cm for cm in maps}
