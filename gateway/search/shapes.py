"""Page statements kept by the shape of their query, so that a search like one seen before is not compiled again.

Writing a page statement is pure Python over the parsed query, the restriction and the page size, and on
PostgreSQL it is most of a search's Python: a gated statement (gated.py) is several pages and the counts that
choose between them, 90-130 us to write for `Specimen?status=..&type=..` or a chain, against ~10 us to parse
the query. Searches repeat their shapes with other values (a client asks for another patient's specimens), so
the text of a statement, with its placeholders, is kept per shape and only its parameters are filled in again.

The shape of a query is all of it but its values' payload: a token's code, a string's text, a date's or
number's bounds, a reference's id or URL (`_PAYLOAD`). Everything else — types, parameters, modifiers,
prefixes, how many values, which payload fields are empty, token systems and reference types — is part of
the key, and so is the restriction but its instant (`at_us`, which changes on every request). The kept text is
learnt, not declared: the first query of a shape is written twice, once as it is and once as its twin, in
which every payload field and the instant are replaced by markers no real query holds (`_Twin`). Each
parameter that differs between the two is the payload of one field — the twin's marker, possibly converted
(a date bound of the query is a float, its parameter an int) — and is filled in from that field afterwards;
the others are constants. A shape whose text depends on a payload (the two texts differ), or whose parameter
is computed from one (a `:contains` pattern, a string's upper bound, an `ap` date's slack), is not kept: it is
written every time, as before.

`verify` (set by the test suite): every kept statement is written again and compared, so that every search
the tests run checks that the shape captures all the text depends on.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

from gateway.access.gate import Restriction
from gateway.search.query import Chain, Clause, Criterion, Has, Missing, Query, Range, Ref, Text, Token
from gateway.search.sql import Sql

KEPT = 4096
"""Shapes kept at most (then forgotten all at once): a statement is ~1-3 kB of text."""

_PAYLOAD: dict[type, frozenset[str]] = {
    Token: frozenset({"code"}), Text: frozenset({"text"}), Range: frozenset({"lo", "hi", "value"}),
    Ref: frozenset({"id", "url"}), Missing: frozenset(),
}
"""The fields of each kind of value that are its payload; the others (a token's system, a date's prefix, a
reference's type, a quantity's unit) are few in practice and part of the shape."""

_NUMBER_MARKER = -(2**57)
"""Twins' numbers (this or twice this, less 1,024 per marker): before any instant a date can be (year 1 is above
-2**56, and the sentinels are +-2**62) and exactly representable as floats, so `int()` of one is the same number."""

Build = Callable[[Sequence[Query], Restriction], Sql | None]


class _Unshaped(Exception):
    """A value of a kind without a declared payload: its query is written every time."""


class _Template:
    __slots__ = ("constants", "slots", "text")

    def __init__(self, text: str, constants: list[Any], slots: list[tuple[int, int, type | None]]) -> None:
        self.text = text
        self.constants = constants
        """The parameters, with None where a slot fills one in."""
        self.slots = slots
        """(parameter position, payload position, conversion or None)."""

    def fill(self, payload: list[Any]) -> Sql:
        params = list(self.constants)
        for position, source, convert in self.slots:
            value = payload[source]
            params[position] = convert(value) if convert is not None else value
        return Sql(self.text, params)


_NOT_KEPT = object()
"""Kept for a shape whose statement cannot be filled in (see the module docstring)."""
_ABSENT = object()


class KeptStatements:
    """Statements by (purpose, query shape, restriction shape); `statement` is the only entry."""

    verify = False

    def __init__(self) -> None:
        self._kept: dict[tuple[Any, ...], Any] = {}

    def statement(self, purpose: tuple[Any, ...], queries: Sequence[Query], restriction: Restriction,
                  build: Build) -> Sql | None:
        """`build(queries, restriction)`, from the statement kept for their shape when there is one. `purpose`:
        what else `build` depends on (a page size, the criteria probed), as hashable values."""
        try:
            payload: list[Any] = [restriction.at_us]
            key = (purpose, _restriction_shape(restriction), *(_query_shape(q, payload) for q in queries))
        except _Unshaped:
            return build(queries, restriction)
        kept = self._kept.get(key, _ABSENT)
        if kept is _ABSENT:
            return self._learn(key, payload, queries, restriction, build)
        if kept is _NOT_KEPT:
            return build(queries, restriction)
        sql = kept.fill(payload) if isinstance(kept, _Template) else None
        if self.verify:
            fresh = build(queries, restriction)
            assert _same(sql, fresh), f"kept statement differs from the one written:\n{sql}\n{fresh}"
        return sql

    def _learn(self, key: tuple[Any, ...], payload: list[Any], queries: Sequence[Query], restriction: Restriction,
               build: Build) -> Sql | None:
        sql = build(queries, restriction)
        twins = (_Twin(0), _Twin(1))
        kept: Any
        try:
            written = []
            for twin in twins:
                marked = dataclasses.replace(restriction, at_us=twin.instant(restriction.at_us))
                written.append(build([twin.query(q) for q in queries], marked))
        except Exception:  # a marker the builder refuses (it read the payload): this shape is written every time
            kept = _NOT_KEPT
        else:
            if sql is None or None in written:
                kept = None if sql is None and written == [None, None] else _NOT_KEPT
            else:
                template = _template(sql, written[0], payload, twins[0].markers)
                # The second twin's values differ in length, case and magnitude: the template must write its
                # statement too, or the text depends on more of a value than the shape holds.
                kept = template if template is not None and _same(template.fill(twins[1].markers), written[1]) \
                    else _NOT_KEPT
        if len(self._kept) >= KEPT:
            self._kept.clear()
        self._kept[key] = kept
        return sql


def _template(sql: Sql, twin: Sql, payload: list[Any], markers: list[Any]) -> _Template | None:
    """The text and constants of `sql`, with slots where its twin holds a marker (None: not a template)."""
    if sql.text != twin.text or len(sql.params) != len(twin.params):
        return None
    where = {_key(m): n for n, m in enumerate(markers)}
    constants: list[Any] = []
    slots: list[tuple[int, int, type | None]] = []
    for position, (real, marked) in enumerate(zip(sql.params, twin.params, strict=True)):
        if type(real) is type(marked) and real == marked:
            constants.append(real)
            continue
        source = where.get(_key(marked)) if isinstance(marked, (str, int, float)) else None
        if source is None:
            return None  # computed from a payload, not the payload itself
        convert = None if type(marked) is type(markers[source]) else type(marked)
        expected = convert(payload[source]) if convert is not None else payload[source]
        if type(expected) is not type(real) or expected != real:
            return None
        constants.append(None)
        slots.append((position, source, convert))
    return _Template(sql.text, constants, slots)


def _key(value: Any) -> Any:
    """Markers compared across a conversion: a number marker converted to int is still found."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return ("n", int(value))
    return ("s", value)


def _same(a: Sql | None, b: Sql | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.text == b.text and [(type(p), p) for p in a.params] == [(type(p), p) for p in b.params]


def _restriction_shape(r: Restriction) -> tuple[Any, ...]:
    return (r.readable, r.confined, r.compartments, r.consent, r.hidden_systems)


def _query_shape(query: Query, payload: list[Any]) -> tuple[Any, ...]:
    """The shape of `query` (hashable: its criteria with each value replaced by the value's shape); its payload
    appended to `payload`, in the order `_Twin` replaces it (both walk `_rebuilt`)."""
    return (query.type, query.count, tuple(query.sort), query.page,
            tuple(_rebuilt(c, lambda v: _value_shape(v, payload)) for c in query.criteria))


def _rebuilt(c: Criterion, value: Callable[[Any], Any]) -> Criterion:
    """`c` with each of its values, in chains and `_has` too, replaced by `value(v)`, always in the same order."""
    if isinstance(c, Clause):
        return dataclasses.replace(c, values=tuple(value(v) for v in c.values))
    if isinstance(c, Chain):
        return dataclasses.replace(c, branches=tuple((t, _rebuilt(inner, value)) for t, inner in c.branches))
    if isinstance(c, Has):
        return dataclasses.replace(c, inner=_rebuilt(c.inner, value))
    raise _Unshaped(type(c).__name__)


@functools.cache
def _layout(kind: type) -> tuple[tuple[str, bool], ...]:
    """A kind of value's fields, in order, and whether each is payload: found once per kind (`dataclasses.fields`
    on every value was ~2 us of a search)."""
    fields = _PAYLOAD.get(kind)
    if fields is None:
        raise _Unshaped(kind.__name__)
    return tuple((f.name, f.name in fields) for f in dataclasses.fields(kind))


def _given(paid: bool, item: Any) -> bool:
    """Whether a field is payload: a payload field that holds something (None and "" are part of the shape:
    they may change the text, as `system|` does)."""
    return paid and item is not None and item != ""


def _value_shape(value: Any, payload: list[Any]) -> tuple[Any, ...]:
    """A value's kind, its other fields and, of each given payload field, its type and, for a text, how many `/`
    it has: a text's segments are read, not only passed on (`uri:above` writes one condition per prefix)."""
    shape: list[Any] = [type(value)]
    for name, paid in _layout(type(value)):
        item = getattr(value, name)
        if _given(paid, item):
            payload.append(item)
            item = _item_shape(item)
        shape.append(item)
    return tuple(shape)


def _item_shape(item: Any) -> Any:
    return (type(item), item.count("/")) if isinstance(item, str) else type(item)


class _Twin:
    """Queries like the ones given, every payload field replaced by a marker (in `_query_shape`'s order): the
    restriction's instant first, then the queries' values. Two variants, whose markers differ in length, case
    and magnitude (a text keeps its number of `/`, part of its shape)."""

    def __init__(self, variant: int) -> None:
        self.variant = variant
        self.markers: list[Any] = []

    def instant(self, like: int) -> Any:
        assert not self.markers, "the instant is the first marker"
        return self.marker(like)

    def marker(self, like: Any) -> Any:
        n = len(self.markers)
        marker: Any
        if isinstance(like, str):
            marker = f"\x00twin{n}\x00" if self.variant == 0 else f"\x00TWIN-{n}{'/' * like.count('/')}{'Z' * n}\x00"
        elif isinstance(like, (int, float)) and not isinstance(like, bool):
            marker = type(like)(_NUMBER_MARKER * (1 + self.variant) - 1024 * n)
        else:
            raise _Unshaped(type(like).__name__)
        self.markers.append(marker)
        return marker

    def query(self, query: Query) -> Query:
        return dataclasses.replace(query, criteria=[_rebuilt(c, self._value) for c in query.criteria])

    def _value(self, value: Any) -> Any:
        changes = {name: self.marker(item) for name, paid in _layout(type(value))
                   if _given(paid, item := getattr(value, name))}
        return dataclasses.replace(value, **changes) if changes else value
