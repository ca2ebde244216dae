"""FHIRPath for invariants and search parameters: fhirpathpy, with a fast path for the common subset.

Why: fhirpathpy interprets its parse tree on every call, 80-250 µs per expression, which
alone would exceed the validator's budget (≥ 5,000 Specimens/s). Invariants and search
parameter expressions are almost always navigation, `where`/`all`/`exists`/`empty`/
`count`/`not`/`isDistinct`, boolean logic and comparisons with literals. Those are
compiled here, once, from fhirpathpy's own parse tree into plain Python closures over the
JSON (about 1-5 µs). Anything outside that subset is compiled with `fhirpathpy.compile`
(R4 model) and runs there; `tests/profiles` checks that both agree on every example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fhirpathpy
from fhirpathpy.models import models
from fhirpathpy.parser import parse

Collection = list[Any]
Fn = Callable[[Collection, Collection], Collection]  # (focus, root) -> result
Compiled = Callable[[dict[str, Any]], Collection]


class Unsupported(Exception):
    """The expression uses FHIRPath outside the fast subset."""


def compile_expression(expression: str) -> Compiled:
    """A function resource -> result collection; fast closures where possible, else fhirpathpy."""
    slow = _lazy_reference(expression)
    try:
        fast = _Compiler().node(parse(expression)["children"][0])
    except Unsupported:
        return slow

    def run(resource: dict[str, Any]) -> Collection:
        try:
            return fast([resource], [resource])
        except Unsupported:  # data outside the subset (several items where one is expected, ...)
            return slow(resource)

    return run


def compile_reference(expression: str) -> Compiled:
    """fhirpathpy's own compilation (R4 model), also used to cross-check the fast path."""
    slow = fhirpathpy.compile(expression, models["r4"])
    return lambda resource: slow(resource)


def _lazy_reference(expression: str) -> Compiled:
    """fhirpathpy compilation deferred to the first call: most expressions never need it."""
    compiled: list[Compiled] = []

    def run(resource: dict[str, Any]) -> Collection:
        if not compiled:
            compiled.append(compile_reference(expression))
        return compiled[0](resource)

    return run


CHOICE_NAMES = frozenset(path.rsplit(".", 1)[1] for path in models["r4"]["choiceTypePaths"])
"""Names of R4 choice elements (`value[x]`, `collected[x]`, ...): only these can appear in JSON
under a typed name (`valueCoding`), so only for these must a missing key send us looking."""


def _plain_children(item: Any, name: str) -> Collection:
    value = item.get(name) if isinstance(item, dict) else None
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _children(item: Any, name: str) -> Collection:
    if not isinstance(item, dict):
        return []
    value = item.get(name)
    if value is None:
        # A choice element is named by its type in JSON: value -> valueCoding, collected -> collectedDateTime.
        for key, v in item.items():
            if key.startswith(name) and len(key) > len(name) and key[len(name)].isupper():
                value = v
                break
        else:
            return []
    return value if isinstance(value, list) else [value]


def _truth(collection: Collection) -> bool | None:
    """FHIRPath singleton evaluation in a boolean context (None = empty)."""
    if not collection:
        return None
    if len(collection) == 1:
        value = collection[0]
        return value if isinstance(value, bool) else True
    raise Unsupported("boolean of a collection with several items")


def _bool(value: bool | None) -> Collection:
    return [] if value is None else [value]


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


class _Target:
    """What `resolve()` gives here: the type a reference points to (only `is` may look at it)."""

    __slots__ = ("type",)

    def __init__(self, type_: str) -> None:
        self.type = type_


def _reference_type(item: Any) -> str | None:
    ref = item.get("reference") if isinstance(item, dict) else None
    if not isinstance(ref, str) or ref.startswith(("urn:", "#")):
        return None
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else None


class _Compiler:
    """Turns fhirpathpy parse-tree nodes into closures; raises Unsupported for anything else."""

    def node(self, n: dict[str, Any]) -> Fn:
        method = getattr(self, "_" + n["type"], None)
        if method is None:
            raise Unsupported(n["type"])
        return method(n)

    def _TermExpression(self, n: dict[str, Any]) -> Fn:
        return self.node(n["children"][0])

    def _UnionExpression(self, n: dict[str, Any]) -> Fn:
        """`a | b`: the items of both, duplicates once (FHIRPath union)."""
        left, right = self.node(n["children"][0]), self.node(n["children"][1])

        def run(focus: Collection, root: Collection) -> Collection:
            out = list(left(focus, root))
            out.extend(item for item in right(focus, root) if item not in out)
            return out

        return run

    def _TypeExpression(self, n: dict[str, Any]) -> Fn:
        """`resolve() is Patient` only (search parameters: references to one type); a reference is
        judged by its text (`Patient/1`, `.../fhir/Patient/1`), as servers index it, without a read."""
        left = self.node(n["children"][0])
        wanted = n["children"][1]["text"].rsplit(".", 1)[-1]
        if " as " in f" {n.get('text', '')} ":
            raise Unsupported("as")

        def run(focus: Collection, root: Collection) -> Collection:
            items = left(focus, root)
            if not items:  # an unresolvable reference (urn:uuid, contained): `{} is T` is empty
                return []
            if len(items) != 1 or not isinstance(items[0], _Target):
                raise Unsupported("is on something other than one resolved reference")
            return [items[0].type == wanted]

        return run

    def _ParenthesizedTerm(self, n: dict[str, Any]) -> Fn:
        return self.node(n["children"][0])

    def _LiteralTerm(self, n: dict[str, Any]) -> Fn:
        lit = n["children"][0]
        text = lit["text"]
        if lit["type"] == "StringLiteral":
            value: Any = text[1:-1].replace("\\'", "'")
        elif lit["type"] == "BooleanLiteral":
            value = text == "true"
        elif lit["type"] == "NumberLiteral":
            value = float(text) if "." in text else int(text)
        else:
            raise Unsupported(lit["type"])
        return lambda focus, root: [value]

    def _InvocationTerm(self, n: dict[str, Any]) -> Fn:
        inv = n["children"][0]
        if inv["type"] == "MemberInvocation":
            name = inv["children"][0]["text"]
            if name[:1].isupper():  # a type name at the start: `Specimen.x` on a Specimen
                return lambda focus, root: [i for i in focus if isinstance(i, dict) and i.get("resourceType") == name]
            return self._member(name)
        if inv["type"] == "ThisInvocation":
            return lambda focus, root: focus
        return self._invocation(inv, lambda focus, root: focus)

    def _InvocationExpression(self, n: dict[str, Any]) -> Fn:
        left = self.node(n["children"][0])
        inv = n["children"][1]
        if inv["type"] == "MemberInvocation":
            member = self._member(inv["children"][0]["text"])
            return lambda focus, root: member(left(focus, root), root)
        return self._invocation(inv, left)

    @staticmethod
    def _member(name: str) -> Fn:
        children = _children if name in CHOICE_NAMES else _plain_children
        return lambda focus, root: [c for item in focus for c in children(item, name)]

    def _invocation(self, inv: dict[str, Any], left: Fn) -> Fn:
        if inv["type"] != "FunctionInvocation":
            raise Unsupported(inv["type"])
        functn = inv["children"][0]
        name = functn["children"][0]["text"]
        params = [self.node(p) for p in functn["children"][1]["children"]] if len(functn["children"]) > 1 else []
        factory = getattr(self, "_fn_" + name, None)
        if factory is None:
            raise Unsupported(name)
        return factory(left, *params)

    # -- functions ---------------------------------------------------------------------------
    @staticmethod
    def _fn_resolve(left: Fn) -> Fn:
        return lambda focus, root: [_Target(t) for i in left(focus, root) if (t := _reference_type(i))]

    @staticmethod
    def _fn_where(left: Fn, criteria: Fn) -> Fn:
        return lambda focus, root: [i for i in left(focus, root) if _truth(criteria([i], root)) is True]

    @staticmethod
    def _fn_all(left: Fn, criteria: Fn) -> Fn:
        return lambda focus, root: [all(_truth(criteria([i], root)) is True for i in left(focus, root))]

    @staticmethod
    def _fn_exists(left: Fn, criteria: Fn | None = None) -> Fn:
        if criteria is None:
            return lambda focus, root: [bool(left(focus, root))]
        return lambda focus, root: [any(_truth(criteria([i], root)) is True for i in left(focus, root))]

    @staticmethod
    def _fn_empty(left: Fn) -> Fn:
        return lambda focus, root: [not left(focus, root)]

    @staticmethod
    def _fn_count(left: Fn) -> Fn:
        return lambda focus, root: [len(left(focus, root))]

    @staticmethod
    def _fn_not(left: Fn) -> Fn:
        def run(focus: Collection, root: Collection) -> Collection:
            value = _truth(left(focus, root))
            return _bool(None if value is None else not value)

        return run

    @staticmethod
    def _fn_hasValue(left: Fn) -> Fn:
        return lambda focus, root: [len(v := left(focus, root)) == 1 and not isinstance(v[0], (dict, list))]

    @staticmethod
    def _fn_first(left: Fn) -> Fn:
        return lambda focus, root: left(focus, root)[:1]

    @staticmethod
    def _fn_isDistinct(left: Fn) -> Fn:
        def run(focus: Collection, root: Collection) -> Collection:
            items = left(focus, root)
            if any(isinstance(i, (dict, list)) for i in items):
                raise Unsupported("isDistinct on complex values")
            return [len(set(items)) == len(items)]

        return run

    @staticmethod
    def _fn_extension(left: Fn, url: Fn) -> Fn:
        return lambda focus, root: [
            e
            for item in left(focus, root)
            for e in _children(item, "extension")
            if isinstance(e, dict) and e.get("url") in url(focus, root)
        ]

    # -- operators ---------------------------------------------------------------------------
    def _EqualityExpression(self, n: dict[str, Any]) -> Fn:
        return self._comparison(n)

    def _InequalityExpression(self, n: dict[str, Any]) -> Fn:
        return self._comparison(n)

    def _comparison(self, n: dict[str, Any]) -> Fn:
        op = n["terminalNodeText"][0]
        if op not in _COMPARE:
            raise Unsupported(op)
        compare = _COMPARE[op]
        left, right = (self.node(c) for c in n["children"])

        def run(focus: Collection, root: Collection) -> Collection:
            a, b = left(focus, root), right(focus, root)
            if not a or not b:
                return []
            if len(a) != 1 or len(b) != 1 or isinstance(a[0], (dict, list)) or isinstance(b[0], (dict, list)):
                raise Unsupported("comparison of non-singletons")
            if isinstance(a[0], bool) != isinstance(b[0], bool) or isinstance(a[0], str) != isinstance(b[0], str):
                raise Unsupported("comparison of different types")
            return [compare(a[0], b[0])]

        return run

    def _AndExpression(self, n: dict[str, Any]) -> Fn:
        left, right = (self.node(c) for c in n["children"])

        def run(focus: Collection, root: Collection) -> Collection:
            a, b = _truth(left(focus, root)), _truth(right(focus, root))
            if a is False or b is False:
                return [False]
            return [True] if a is True and b is True else []

        return run

    def _OrExpression(self, n: dict[str, Any]) -> Fn:
        if n["terminalNodeText"][0] != "or":
            raise Unsupported("xor")
        left, right = (self.node(c) for c in n["children"])

        def run(focus: Collection, root: Collection) -> Collection:
            a, b = _truth(left(focus, root)), _truth(right(focus, root))
            if a is True or b is True:
                return [True]
            return [False] if a is False and b is False else []

        return run

    def _ImpliesExpression(self, n: dict[str, Any]) -> Fn:
        left, right = (self.node(c) for c in n["children"])

        def run(focus: Collection, root: Collection) -> Collection:
            a = _truth(left(focus, root))
            if a is False:
                return [True]
            b = _truth(right(focus, root))
            if a is True:
                return _bool(b)
            return [True] if b is True else []

        return run
