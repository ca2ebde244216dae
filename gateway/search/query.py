"""A FHIR search request parsed into criteria and result parameters (R4 search.html).

Parsing is where `Prefer: handling` applies: an unknown parameter, an unsupported
modifier or a malformed value is a 400 under `handling=strict` and, under the default
`lenient`, is dropped and named in an OperationOutcome the Bundle carries. Security is not
decided here (the compiler refuses what the principal may not touch); this module only
understands the grammar: `,` is OR, a repeated parameter is AND, `\\` escapes `,|$\\`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.fhir import paging
from gateway.fhir.errors import FhirError, Issue
from gateway.search.params import Registry, SearchParam
from gateway.search.values import date_range, decimal_range, local_reference, normalize

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MODIFIERS = {
    "token": {"", "not", "text", "missing"},
    "string": {"", "exact", "contains", "missing"},
    "date": {"", "missing"},
    "number": {"", "missing"},
    "quantity": {"", "missing"},
    "reference": {"", "identifier", "missing"},
    "uri": {"", "below", "above", "missing"},
}
SUMMARIES = ("true", "false", "count", "data")
TOTALS = ("none", "estimate", "accurate")
IGNORED = {"_format", "_pretty"}
"""Parameters other layers answer (content negotiation); search accepts and ignores them."""


@dataclass(frozen=True, slots=True)
class Token:
    """`system|code`: system None = any system, "" = no system; code None = any code."""

    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Range:
    """A prefixed date or number: [lo, hi] (dates: inclusive microseconds; numbers: precision range)."""

    prefix: str
    lo: float
    hi: float
    value: float = 0.0
    system: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Ref:
    type: str | None = None
    id: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Missing:
    missing: bool


@dataclass(frozen=True, slots=True)
class Clause:
    """One parameter of the searched type; its values are alternatives (OR)."""

    param: SearchParam
    modifier: str
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Chain:
    """`param[:Type].rest`: resources whose reference points at a target matching `rest`, per target type."""

    param: SearchParam
    branches: tuple[tuple[str, Criterion], ...]
    explicit: bool


@dataclass(frozen=True, slots=True)
class Has:
    """`_has:Source:param:rest`: resources referenced (by `param`) from a Source matching `rest`."""

    source: str
    param: SearchParam
    target: str
    inner: Criterion


Criterion = Clause | Chain | Has


@dataclass(frozen=True, slots=True)
class Include:
    source: str
    param: str
    target: str | None
    iterate: bool
    reverse: bool


@dataclass(frozen=True, slots=True)
class SortKey:
    param: SearchParam
    descending: bool


@dataclass
class Query:
    type: str
    criteria: list[Criterion] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int = 20
    includes: list[Include] = field(default_factory=list)
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total: str | None = None
    page: str | None = None
    issues: list[Issue] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)
    """The parameters understood, as sent (without `_page`): what the links repeat."""


class _Malformed(ValueError):
    """A parameter this server cannot apply; lenient mode drops it, strict mode answers 400."""


def split(text: str, separator: str) -> list[str]:
    """Split on unescaped `separator`, keeping escapes for the next level (`unescape` removes them)."""
    if "\\" not in text:
        return text.split(separator)  # the common case, without walking the characters
    parts, current, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            current.append(text[i:i + 2])
            i += 2
            continue
        if c == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _prefixed(text: str) -> tuple[str, str]:
    if len(text) > 2 and text[:2] in PREFIXES and (text[2].isdigit() or text[2] in "-+."):
        return text[:2], text[2:]
    return "eq", text


Change = Callable[[Query], None]
"""What one request parameter does to a Query (add a criterion, set `_count`, ...)."""


class Parser:
    """Turns request parameters into Queries: one per searched type, with the same result parameters."""

    def __init__(self, registry: Registry, base: str, *, strict: bool, default_count: int, max_count: int) -> None:
        self.registry = registry
        self.base = base.rstrip("/")
        self.strict = strict
        self.default_count = default_count
        self.max_count = max_count

    def parse(self, type_: str, params: list[tuple[str, str]]) -> Query:
        return self.parse_many([type_], params)[0]

    def parse_many(self, types: Sequence[str], params: list[tuple[str, str]]) -> list[Query]:
        """A Query per type (system-level search: `_type` lists several). A parameter must apply to
        every type or it applies to none: a search over Patient and Specimen by `gender` is not a
        search of all Specimens plus the female Patients, so it is malformed for all of them."""
        queries = [Query(t, count=self.default_count) for t in types]
        issues: list[Issue] = []
        kept: list[tuple[str, str]] = []
        for key, value in params:
            if key in IGNORED:
                continue
            try:
                changes = [self._change(t, key, value) for t in types]
            except _Malformed as exc:
                if self.strict:
                    raise FhirError.of(400, "invalid", f"{exc} (Prefer: handling=strict)", (key,)) from exc
                issues.append(Issue("warning", "not-supported", f"Ignored {key}={value}: {exc}", (key,)))
                continue
            for query, change in zip(queries, changes, strict=True):
                if change is not None:
                    change(query)
            if key != "_page" and changes and changes[0] is not None:
                kept.append((key, value))
        for query in queries:
            query.issues, query.kept = issues, kept
        return queries

    def _change(self, type_: str, key: str, value: str) -> Change | None:
        """How `key=value` changes a Query of `type_` (None: nothing, as for an empty value); _Malformed
        when it cannot apply."""
        name, _, modifier = key.partition(":")
        if name == "_count":
            try:
                count = paging.parse_count(value, self.default_count, self.max_count)
            except FhirError as exc:
                raise _Malformed(f"_count must be a non-negative integer, got {value!r}") from exc
            return lambda q: setattr(q, "count", count)
        if name == "_sort":
            sort = [self._sort_key(type_, item) for item in value.split(",") if item]
            return lambda q: setattr(q, "sort", sort)
        if name in ("_include", "_revinclude"):
            if modifier not in ("", "iterate", "recurse"):
                raise _Malformed(f"{name}:{modifier} is not a known modifier (use :iterate)")
            include = self._include(value, modifier != "", name == "_revinclude")
            return lambda q: q.includes.append(include)
        if name == "_summary":
            if value not in SUMMARIES:
                raise _Malformed(f"_summary must be one of {', '.join(SUMMARIES)}")
            return lambda q: setattr(q, "summary", value)
        if name == "_elements":
            elements = tuple(e.strip() for e in value.split(",") if e.strip())
            return lambda q: setattr(q, "elements", elements)
        if name == "_total":
            if value not in TOTALS:
                raise _Malformed(f"_total must be one of {', '.join(TOTALS)}")
            return lambda q: setattr(q, "total", value)
        if name == "_page":
            return lambda q: setattr(q, "page", value)
        if value == "":
            return None  # FHIR: a parameter without a value is ignored
        criterion = self.criterion(type_, key, value)
        return lambda q: q.criteria.append(criterion)

    def _sort_key(self, type_: str, item: str) -> SortKey:
        descending = item.startswith("-")
        code = item.lstrip("-")
        param = self.registry.get(type_, code)
        if param is None:
            raise _Malformed(f"cannot sort {type_} by {code!r}: not a search parameter of {type_}")
        return SortKey(param, descending)

    def _include(self, value: str, iterate: bool, reverse: bool) -> Include:
        if value == "*":
            return Include("*", "*", None, iterate, reverse)
        parts = value.split(":")
        if len(parts) not in (2, 3):
            raise _Malformed(f"{value!r} is not Type:parameter[:targetType]")
        source, code = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if source not in self.registry.types:
            raise _Malformed(f"{source} is not a resource type served here")
        if code != "*":
            param = self.registry.get(source, code)
            if param is None or param.kind != "reference":
                raise _Malformed(f"{source} has no reference search parameter {code!r}")
            if target is not None and target not in param.targets:
                raise _Malformed(f"{source}:{code} cannot point at {target}")
        return Include(source, code, target, iterate, reverse)

    def criterion(self, type_: str, key: str, value: str) -> Criterion:
        if key.startswith("_has:"):
            return self._has(type_, key, value)
        head, dot, rest = key.partition(".")
        name, _, modifier = head.partition(":")
        param = self.registry.get(type_, name)
        if param is None:
            raise _Malformed(f"{name!r} is not a search parameter of {type_} on this server")
        if dot:
            return self._chain(type_, param, modifier, rest, value)
        return Clause(param, modifier, self._values(param, modifier, value))

    def _has(self, type_: str, key: str, value: str) -> Has:
        parts = key.split(":", 3)
        if len(parts) != 4 or not parts[3]:
            raise _Malformed("_has is _has:Type:reference:parameter")
        _, source, code, rest = parts
        if source not in self.registry.types:
            raise _Malformed(f"_has: {source} is not a resource type served here")
        param = self.registry.get(source, code)
        if param is None or param.kind != "reference" or type_ not in param.targets:
            raise _Malformed(f"_has: {source}.{code} is not a reference to {type_}")
        return Has(source, param, type_, self.criterion(source, rest, value))

    def _chain(self, type_: str, param: SearchParam, modifier: str, rest: str, value: str) -> Chain:
        if param.kind != "reference":
            raise _Malformed(f"{param.code} is not a reference: it cannot be chained")
        if modifier and modifier not in param.targets:
            raise _Malformed(f"{type_}.{param.code} cannot point at {modifier!r}")
        targets = (modifier,) if modifier else param.targets
        branches = []
        for target in targets:
            try:
                branches.append((target, self.criterion(target, rest, value)))
            except _Malformed:
                if modifier or len(targets) == 1:
                    raise
        if not branches:
            raise _Malformed(f"no target type of {type_}.{param.code} has a parameter {rest!r}")
        return Chain(param, tuple(branches), bool(modifier))

    def _values(self, param: SearchParam, modifier: str, value: str) -> tuple[Any, ...]:
        kind = param.kind
        allowed = {""} if param.column else MODIFIERS[kind]
        type_modifier = kind == "reference" and modifier in param.targets
        if modifier not in allowed and not type_modifier:
            raise _Malformed(f"modifier :{modifier} is not supported for {kind} parameter {param.code}")
        if modifier == "missing":
            if value not in ("true", "false"):
                raise _Malformed(":missing takes true or false")
            return (Missing(value == "true"),)
        try:
            return tuple(self._value(kind, modifier, item) for item in split(value, ","))
        except ValueError as exc:
            raise _Malformed(str(exc)) from exc

    def _value(self, kind: str, modifier: str, item: str) -> Any:
        if kind == "token" or modifier == "identifier":
            if modifier == "text":
                return Text(normalize(unescape(item)))
            parts = split(item, "|")
            if len(parts) == 1:
                return Token(None, unescape(item))
            if len(parts) != 2:
                raise ValueError(f"{item!r} is not code, system|code, |code or system|")
            system, code = unescape(parts[0]), unescape(parts[1])
            return Token(system, code or None)
        if kind == "string":
            text = unescape(item)
            text = text if modifier == "exact" else normalize(text)
            if not text:
                raise ValueError(f"{item!r} has no searchable characters")
            return Text(text)
        if kind == "uri":
            return Text(unescape(item))
        if kind == "date":
            prefix, rest = _prefixed(item)
            lo, hi = date_range(rest)
            return Range(prefix, lo, hi)
        if kind in ("number", "quantity"):
            parts = [unescape(p) for p in split(item, "|")]
            if len(parts) not in (1, 3) or (kind == "number" and len(parts) != 1):
                raise ValueError(f"{item!r} is not [prefix]number|system|code")
            prefix, number = _prefixed(parts[0])
            exact, lo, hi = decimal_range(number)
            system, code = (parts[1] or None, parts[2] or None) if len(parts) == 3 else (None, None)
            return Range(prefix, lo, hi, float(exact), system, code)
        return self._reference(modifier, unescape(item))

    def _reference(self, modifier: str, text: str) -> Ref:
        if modifier:
            return Ref(modifier, text)
        if text.startswith(self.base + "/"):
            text = text[len(self.base) + 1:]
        local = local_reference(text)
        if local:
            return Ref(*local)
        if "/" in text or ":" in text:
            return Ref(url=text)
        return Ref(id=text)
