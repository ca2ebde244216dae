"""Value set membership for required bindings, from the CodeSystems and ValueSets under profiles/.

Why: the biobank's bindings point at its own (small, complete) code systems or at value
sets that list their codes; expanding them once at load time turns every binding check
into a set lookup.
"""

from __future__ import annotations

from functools import cache
from typing import Any

Member = tuple[str, str]  # (system, code)


class Terminology:
    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self._value_sets = {r["url"]: r for r in resources if r.get("resourceType") == "ValueSet"}
        self._code_systems = {r["url"]: r for r in resources if r.get("resourceType") == "CodeSystem"}
        self.members = cache(self._expand)

    def _expand(self, url: str) -> frozenset[Member]:
        """All (system, code) pairs of the value set `url` (a `|version` suffix is ignored)."""
        vs = self._value_sets.get(url.split("|")[0])
        if vs is None:
            raise KeyError(f"value set not shipped in profiles/: {url}")
        compose = vs.get("compose", {})
        included = frozenset().union(*(self._include(i) for i in compose.get("include", [])))
        excluded = frozenset().union(*(self._include(i) for i in compose.get("exclude", [])))
        return included - excluded

    def _include(self, include: dict[str, Any]) -> frozenset[Member]:
        system = include.get("system")
        if "concept" in include:
            found = frozenset((system, c["code"]) for c in include["concept"])
        elif system:
            found = frozenset((system, code) for code in self.codes_of(system))
        else:
            found = None
        for url in include.get("valueSet", []):
            members = self.members(url)
            found = members if found is None else found & members
        return found or frozenset()

    def codes_of(self, system: str) -> list[str]:
        cs = self._code_systems.get(system)
        if cs is None:
            raise KeyError(f"code system not shipped in profiles/: {system}")
        if cs.get("content") != "complete":
            raise ValueError(f"code system {system} is not complete; it cannot back a required binding")
        out: list[str] = []
        stack = list(cs.get("concept", []))
        while stack:
            concept = stack.pop()
            out.append(concept["code"])
            stack.extend(concept.get("concept", []))
        return out
