"""The compiled form of a profile: a tree of element rules walked once over a resource's JSON.

Why: walking the resource along a tree built at load time visits only the elements a
profile constrains, and every check is a small closure prepared in advance, so a
validation costs a few dictionary lookups per constrained element.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.fhir.errors import Issue

Issues = list[Issue]
ItemCheck = Callable[[Any, str, Issues], None]  # (value, FHIRPath of the value, issues)
_WRONG_TYPE = object()  # a choice element of a type the rule does not allow (already reported)


@dataclass(slots=True)
class Slice:
    name: str
    discriminator: Any  # the value the discriminator path must have
    rule: ElementRule


@dataclass(slots=True)
class Slicing:
    path: str  # discriminator path inside each item ("system", "url")
    ordered: bool
    closed: bool
    slices: list[Slice] = field(default_factory=list)


@dataclass(slots=True)
class ElementRule:
    """Rules for one element (or one slice) relative to its parent object."""

    name: str  # the element name; for a choice element the name without [x]
    choice_types: tuple[str, ...] | None = None  # allowed JSON suffixes of a choice element
    choice_issue: str = "structure"
    min: int = 0
    max: int | None = None  # None: no maximum to check
    checks: list[ItemCheck] = field(default_factory=list)
    children: dict[str, ElementRule] = field(default_factory=dict)
    slicing: Slicing | None = None

    def child(self, name: str) -> ElementRule:
        if name not in self.children:
            base = name[:-3] if name.endswith("[x]") else name
            self.children[name] = ElementRule(base, () if name.endswith("[x]") else None)
        return self.children[name]

    def is_trivial(self) -> bool:
        return not (
            self.min or self.max is not None or self.checks or self.children or self.slicing or self.choice_types
        )

    # -- evaluation --------------------------------------------------------------------------
    def visit(self, parent: dict[str, Any], parent_expr: str, issues: Issues) -> None:
        if self.choice_types is None:
            key, value = self.name, parent.get(self.name)
        else:
            key, value = self._lookup(parent, parent_expr, issues)
            if value is _WRONG_TYPE:
                return
        if value is None:
            if self.min:
                issues.append(
                    Issue(
                        "error",
                        "required",
                        f"{parent_expr}.{self.name}: minimum cardinality {self.min}, none found",
                        (f"{parent_expr}.{self.name}",),
                    )
                )
            return
        if not isinstance(value, list):
            if self.min > 1:
                issues.append(
                    Issue(
                        "error",
                        "required",
                        f"{parent_expr}.{key}: minimum cardinality {self.min}, found 1",
                        (f"{parent_expr}.{key}",),
                    )
                )
            if self.max == 0:
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"{parent_expr}.{key}: maximum cardinality 0, found 1",
                        (f"{parent_expr}.{key}",),
                    )
                )
            if self.checks or self.children:
                self.apply(value, f"{parent_expr}.{key}", issues)
            return
        n = len(value)
        if n < self.min:
            issues.append(
                Issue(
                    "error",
                    "required",
                    f"{parent_expr}.{key}: minimum cardinality {self.min}, found {n}",
                    (f"{parent_expr}.{key}",),
                )
            )
        if self.max is not None and n > self.max:
            issues.append(
                Issue(
                    "error",
                    "structure",
                    f"{parent_expr}.{key}: maximum cardinality {self.max}, found {n}",
                    (f"{parent_expr}.{key}",),
                )
            )
        if not (self.checks or self.children or self.slicing):
            return
        exprs = [f"{parent_expr}.{key}[{i}]" for i in range(n)]
        if self.checks or self.children:
            for item, expr in zip(value, exprs, strict=True):
                self.apply(item, expr, issues)
        if self.slicing is not None:
            self._slices(value, exprs, f"{parent_expr}.{key}", issues)

    def apply(self, item: Any, expr: str, issues: Issues) -> None:
        """Checks and children of one item (also used for slice members)."""
        for check in self.checks:
            check(item, expr, issues)
        if self.children and isinstance(item, dict):
            for child in self.children.values():
                # Absent optional elements have nothing to check: skip the call.
                if child.min or child.choice_types is not None or child.name in item:
                    child.visit(item, expr, issues)

    def _lookup(self, parent: dict[str, Any], parent_expr: str, issues: Issues) -> tuple[str, Any]:
        if self.choice_types is None:
            return self.name, parent.get(self.name)
        n = len(self.name)
        for key, value in parent.items():
            if key.startswith(self.name) and len(key) > n and key[n].isupper():
                if self.choice_types and key[n:] not in self.choice_types:
                    issues.append(
                        Issue(
                            "error",
                            self.choice_issue,
                            f"{parent_expr}.{key}: type {key[n:]} not allowed here "
                            f"(allowed: {', '.join(self.choice_types)})",
                            (f"{parent_expr}.{key}",),
                        )
                    )
                    return key, _WRONG_TYPE
                return key, value
        return self.name, None

    def _slices(self, items: list[Any], exprs: list[str], expr: str, issues: Issues) -> None:
        slicing = self.slicing
        assert slicing is not None
        members: list[list[int]] = [[] for _ in slicing.slices]
        for i, item in enumerate(items):
            disc = item.get(slicing.path) if isinstance(item, dict) else None
            for s, sl in enumerate(slicing.slices):
                if disc == sl.discriminator:
                    members[s].append(i)
                    break
            else:
                if slicing.closed:
                    issues.append(
                        Issue(
                            "error",
                            "structure",
                            f"{exprs[i]}: {slicing.path} {disc!r} matches no slice of a closed slicing",
                            (exprs[i],),
                        )
                    )
        for sl, idx in zip(slicing.slices, members, strict=True):
            rule = sl.rule
            if len(idx) < rule.min:
                issues.append(
                    Issue(
                        "error",
                        "required",
                        f"{expr}: slice '{sl.name}' ({slicing.path} = {sl.discriminator}) "
                        f"needs at least {rule.min}, found {len(idx)}",
                        (expr,),
                    )
                )
            if rule.max is not None and len(idx) > rule.max:
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"{expr}: slice '{sl.name}' allows at most {rule.max}, found {len(idx)}",
                        (expr,),
                    )
                )
            for i in idx:
                rule.apply(items[i], exprs[i], issues)
        if slicing.ordered:
            self._order(items, exprs, issues)

    def _order(self, items: list[Any], exprs: list[str], issues: Issues) -> None:
        """Ordered slicing: position k holds slice k for the leading required slices (first mismatch only)."""
        slicing = self.slicing
        assert slicing is not None
        for k, sl in enumerate(slicing.slices):
            if sl.rule.min < 1 or k >= len(items):
                return
            item = items[k]
            found = item.get(slicing.path) if isinstance(item, dict) else None
            if found != sl.discriminator:
                issues.append(
                    Issue(
                        "error",
                        "value",
                        f"{exprs[k]}.{slicing.path}: expected {sl.discriminator!r} "
                        f"(slice '{sl.name}' comes at position {k}), found {found!r}",
                        (f"{exprs[k]}.{slicing.path}",),
                    )
                )
                return
