"""Keyset pages: the position after (or before) a row, carried in an opaque `_page` token.

A page is `WHERE (sort keys, id) > (the last row's) ORDER BY sort keys, id LIMIT n+1` —
never OFFSET — so a page boundary is a place in the order, not a count of rows: resources
written while a client pages do not shift what it sees, and every match that exists for
the whole walk is returned exactly once (the id is the last key, so the order is total).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from gateway.fhir import paging
from gateway.fhir.errors import FhirError
from gateway.search.sql import Sql, all_of, any_of


@dataclass(frozen=True, slots=True)
class Position:
    """The sort-key values and id of a boundary row; `backward`: the page ends before it (previous link)."""

    keys: tuple[Any, ...]
    id: str
    backward: bool = False

    def token(self) -> str:
        return paging.encode({"k": list(self.keys), "i": self.id, "b": int(self.backward)})


def decode(token: str, key_types: Sequence[type]) -> Position:
    """The position in `token`, checked against the search's sort keys (400 for a token of another search)."""
    raw = paging.decode(token)
    keys, id_ = raw.get("k"), raw.get("i")
    if (not isinstance(keys, list) or len(keys) != len(key_types) or not isinstance(id_, str)
            or not all(_fits(k, t) for k, t in zip(keys, key_types, strict=True))):
        raise FhirError.of(400, "invalid", "The page token does not belong to this search: follow the Bundle's links")
    return Position(tuple(float(k) if t is float else k for k, t in zip(keys, key_types, strict=True)), id_,
                    bool(raw.get("b")))


def _fits(value: Any, expected: type) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) if expected is float else isinstance(value, expected)


def after(keys: Sequence[tuple[Sql, bool]], id_column: str, position: Position) -> Sql:
    """Rows strictly past `position` in the order (or strictly before it, for a backward page)."""
    options = []
    for i in range(len(keys) + 1):
        equal = [Sql(f"{expr.text} = ?", [*expr.params, value])
                 for (expr, _), value in zip(keys[:i], position.keys[:i], strict=True)]
        if i < len(keys):
            expr, descending = keys[i]
            op = ">" if descending == position.backward else "<"
            step = Sql(f"{expr.text} {op} ?", [*expr.params, position.keys[i]])
        else:
            step = Sql(f"{id_column} {'<' if position.backward else '>'} ?", [position.id])
        options.append(all_of([*equal, step]))
    return options[0] if len(options) == 1 else any_of(options)


def order_by(keys: Sequence[tuple[Sql, bool]], id_column: str, backward: bool) -> Sql:
    parts = [Sql(f"{expr.text} {'DESC' if descending != backward else 'ASC'}", expr.params)
             for expr, descending in keys]
    parts.append(Sql(f"{id_column} {'DESC' if backward else 'ASC'}"))
    return Sql(", ".join(p.text for p in parts), [x for p in parts for x in p.params])


def links(base: str, path: str, kept: list[tuple[str, str]], current: str | None, next_: Position | None,
          previous: Position | None) -> list[tuple[str, str]]:
    """self/first/previous/next, from the public base URL, repeating the parameters that were understood
    (encoded once: only the page token differs between the links)."""
    start = f"{base}{path}"
    query = urlencode(kept)

    def url(page: str | None) -> str:
        if not page:
            return f"{start}?{query}" if query else start
        return f"{start}?{query}{'&' if query else ''}_page={quote(page, safe='')}"

    out = [("self", url(current)), ("first", url(None))]
    if previous is not None:
        out.append(("previous", url(previous.token())))
    if next_ is not None:
        out.append(("next", url(next_.token())))
    return out
