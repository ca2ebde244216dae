"""Compile StructureDefinitions (profiles and extensions) and the base R4 required bindings into rule trees.

Why: all interpretation of the conformance resources happens here, once, at load time; the
validator then only walks the prepared trees. A profile contributes the rules of its
differential, read from the merged snapshot elements (so slices, fixed values and
bindings carry their full definitions), plus every non-structural invariant of its
snapshot, the base resource's own ones (ppc-1, grp-1, pat-1, ...) included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.fhir.errors import Issue
from gateway.profiles import checks
from gateway.profiles.fhirpath import Compiled, compile_expression
from gateway.profiles.rules import ElementRule, Issues, Slice, Slicing
from gateway.profiles.terminology import Terminology

# Structural invariants (ele-1, dom-*, ext-1, txt-*) are the base structural validation's job.
STRUCTURAL_PREFIXES = ("ele-", "dom-", "ext-", "txt-")


@dataclass(frozen=True, slots=True)
class Invariant:
    key: str
    severity: str
    human: str
    expression: str
    path: str
    evaluate: Compiled

    def check(self, resource: dict[str, Any], issues: Issues) -> None:
        if self.evaluate(resource) != [True]:
            issues.append(
                Issue(
                    "error" if self.severity == "error" else "warning",
                    "invariant",
                    f"{self.path}: {self.key} failed: {self.human} ({self.expression})",
                    (self.path,),
                )
            )


@dataclass(slots=True)
class CompiledProfile:
    url: str
    type: str
    root: ElementRule
    invariants: list[Invariant] = field(default_factory=list)

    def check(self, resource: dict[str, Any], issues: Issues) -> None:
        self.root.apply(resource, self.type, issues)
        for invariant in self.invariants:
            invariant.check(resource, issues)


@dataclass(slots=True)
class CompiledExtension:
    url: str
    contexts: frozenset[str]
    root: ElementRule


def _max(value: str | None) -> int | None:
    return None if value in (None, "*") else int(value)


def _type_name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


class ProfileCompiler:
    def __init__(self, terminology: Terminology, profile_types: dict[str, str]) -> None:
        self.terminology = terminology
        self.profile_types = profile_types  # profile url -> resource type, for reference targets

    def profile(self, sd: dict[str, Any]) -> CompiledProfile:
        root = self._rules(sd, choice_issue="structure")
        invariants = [
            self._invariant(el, c, sd["type"])
            for el in sd["snapshot"]["element"]
            for c in el.get("constraint", [])
            if not c["key"].startswith(STRUCTURAL_PREFIXES)
        ]
        return CompiledProfile(sd["url"], sd["type"], root, invariants)

    def extension(self, sd: dict[str, Any]) -> CompiledExtension:
        contexts = frozenset(c["expression"] for c in sd.get("context", []) if c.get("type") == "element")
        return CompiledExtension(sd["url"], contexts, self._rules(sd, choice_issue="extension"))

    @staticmethod
    def _invariant(el: dict[str, Any], constraint: dict[str, Any], type_name: str) -> Invariant:
        relative = el["path"][len(type_name) + 1 :]
        expression = constraint["expression"] if not relative else f"{relative}.all({constraint['expression']})"
        return Invariant(
            constraint["key"],
            constraint.get("severity", "error"),
            constraint.get("human", ""),
            constraint["expression"],
            el["path"],
            compile_expression(expression),
        )

    def _rules(self, sd: dict[str, Any], choice_issue: str) -> ElementRule:
        root = ElementRule(sd["type"])
        slices: dict[str, Slice] = {}
        declared = {e["id"]: e for e in sd["differential"]["element"]}
        for el in sd["snapshot"]["element"]:
            if el["id"] in declared and el["id"] != sd["type"]:
                rule = self._locate(root, el["id"], slices)
                discriminates = self._discriminate(el, slices)
                # Bindings inherited from the base are checked from required-bindings.json, not twice.
                binding = declared[el["id"]].get("binding", {})
                self._configure(rule, el, binding, choice_issue, skip_fixed=discriminates)
        missing = [sid for sid, sl in slices.items() if sl.discriminator is None]
        if missing:
            raise ValueError(f"{sd['url']}: slices without a discriminator value: {missing}")
        return root

    @staticmethod
    def _locate(root: ElementRule, element_id: str, slices: dict[str, Slice]) -> ElementRule:
        """The rule for `element_id` (e.g. `Specimen.type.coding:sct.system`), created on the way."""
        node = root
        prefix = element_id.split(".")[0]
        for segment in element_id.split(".")[1:]:
            name, _, slice_name = segment.partition(":")
            prefix = f"{prefix}.{segment}"
            node = node.child(name)
            if slice_name:
                if node.slicing is None:
                    raise ValueError(f"{element_id}: slice without slicing on its element")
                if prefix not in slices:
                    slices[prefix] = Slice(slice_name, None, ElementRule(name))
                    node.slicing.slices.append(slices[prefix])
                node = slices[prefix].rule
        return node

    @staticmethod
    def _discriminate(el: dict[str, Any], slices: dict[str, Slice]) -> bool:
        """Record the slice's discriminator value if `el` defines it; True when its fixed value is just that.

        Slicing here is by value of `system` (identifiers, codings) or `url` (extensions): a
        slice is named by the fixed value of that child, or by the extension profile's url.
        """
        element_id = el["id"]
        if element_id in slices:
            profiles = [p for t in el.get("type", []) for p in t.get("profile", [])]
            if profiles:
                slices[element_id].discriminator = profiles[0]
            return False
        head, _, last = element_id.rpartition(".")
        fixed = [v for k, v in el.items() if k.startswith("fixed")]
        if head in slices and fixed and last in ("system", "url"):
            slices[head].discriminator = fixed[0]
            return True
        return False

    def _configure(
        self, rule: ElementRule, el: dict[str, Any], binding: dict[str, Any], choice_issue: str, skip_fixed: bool
    ) -> None:
        base = el.get("base", {})
        label = el["id"]
        if "sliceName" in el or (el.get("min"), el.get("max")) != (base.get("min"), base.get("max")):
            rule.min, rule.max = el.get("min", 0), _max(el.get("max"))
        if "slicing" in el:
            sl = el["slicing"]
            rule.slicing = Slicing(
                sl["discriminator"][0]["path"], sl.get("ordered", False), sl.get("rules") == "closed"
            )
        types = el.get("type", [])
        for key, value in el.items():
            if key.startswith("fixed") and not skip_fixed:
                rule.checks.append(checks.fixed(value, label))
            elif key.startswith("pattern"):
                rule.checks.append(checks.pattern(value, label))
        if binding.get("strength") == "required" and binding.get("valueSet") and types:
            rule.checks.append(
                checks.binding(types[0]["code"], self.terminology.members(binding["valueSet"]), binding["valueSet"])
            )
        if el["path"].endswith("[x]") and types:
            rule.choice_types = tuple(t["code"][0].upper() + t["code"][1:] for t in types)
            rule.choice_issue = choice_issue
        targets = [p for t in types if t["code"] == "Reference" for p in t.get("targetProfile", [])]
        if targets:
            rule.checks.append(
                checks.reference_target(frozenset(self.profile_types.get(p, _type_name(p)) for p in targets))
            )


def base_binding_rules(type_name: str, bindings: dict[str, Any]) -> ElementRule:
    """The base R4 required bindings of `type_name` as a rule tree (from required-bindings.json)."""
    root = ElementRule(type_name)
    for path, spec in bindings.items():
        parts = path.split(".")
        if parts[0] != type_name:
            continue
        node = root
        for name in parts[1:]:
            node = node.child(name)
        node.checks.append(
            checks.base_binding(spec["types"], frozenset(spec["codes"]), frozenset(spec["systems"]), spec["valueSet"])
        )
    return root
