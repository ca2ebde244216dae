"""The search engine: parse, compile with the principal's restriction, run, page, include.

This is the `Searcher` the API layer holds (gateway.api.context): the search interactions
call `search`, conditional interactions `ids`, the CapabilityStatement `declared` and
`includes` — which list exactly the parameters the registry serves, so the statement and
the engine cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.access.gate import Restriction
from gateway.fhir.errors import Issue
from gateway.search.cursor import Position, after, decode, order_by
from gateway.search.include import Includer
from gateway.search.params import Registry, default_registry
from gateway.search.query import Clause, Parser, Query
from gateway.search.shape import Shape, shaper
from gateway.search.sql import (
    RESOURCE_COLUMNS,
    Compiler,
    Sql,
    all_of,
    fetch,
    insufficient_scope,
    live,
    sort_expression,
    sort_type,
    stored,
)
from gateway.store import Store, StoredResource

_COLS = ", ".join(f"r.{c}" for c in RESOURCE_COLUMNS)
PROBE_ABOVE = 2000
"""Index rows above which a criterion is probed per resource on SQLite (see `SearchEngine.probed`)."""


@dataclass
class Page:
    """One page of a search: what the searchset Bundle is made of (before the egress gate)."""

    query: Query
    matches: list[StoredResource] = field(default_factory=list)
    included: list[StoredResource] = field(default_factory=list)
    total: int | None = None
    next: Position | None = None
    previous: Position | None = None
    shape: Shape | None = None

    @property
    def issues(self) -> list[Issue]:
        return self.query.issues


class SearchEngine:
    def __init__(self, store: Store, registry: Registry | None = None, *, base_url: str = "",
                 default_count: int = 20, max_count: int = 1000) -> None:
        self.store = store
        self.registry = registry or default_registry()
        self.base_url = base_url
        self.default_count = default_count
        self.max_count = max_count

    def parse(self, type_: str, params: list[tuple[str, str]], strict: bool = False) -> Query:
        parser = Parser(self.registry, self.base_url, strict=strict, default_count=self.default_count,
                        max_count=self.max_count)
        return parser.parse(type_, params)

    def where(self, query: Query, restriction: Restriction, probed: frozenset[int] = frozenset()) -> Sql:
        """The WHERE clause of the matches (alias `r`): criteria and restriction, no paging."""
        criteria = Compiler(restriction).criteria(query.criteria, "r", probed)
        return all_of([live("r", query.type, restriction), criteria])

    async def probed(self, query: Query, restriction: Restriction) -> frozenset[int]:
        """Which criteria SQLite should check per resource (EXISTS) rather than as id lists (IN).

        PostgreSQL's planner chooses between walking the primary key in id order (stopping at
        `_count`) and starting from the rarest criterion; SQLite's always materialises every
        `IN (SELECT ...)` list — 25 ms for a page of `status=unavailable` over 100k specimens,
        0.3 ms as EXISTS probes, while EXISTS costs 230 ms for `identifier=X` that IN answers in
        0.02 ms. So count each plain criterion's index rows, up to a bound: criteria above it
        become probes, and if none is below it the walk in id order drives the query.
        """
        if self.store.dialect != "sqlite":
            return frozenset()
        compiler = Compiler(restriction)
        large = set()
        for i, c in enumerate(query.criteria):
            if isinstance(c, Clause) and c.param.column is None and c.modifier not in ("missing", "not"):
                rows = compiler.matching_rows(c)
                found = await self.store.db.fetchall(f"SELECT COUNT(*) FROM ({rows.text} LIMIT ?)",
                                                     [*rows.params, PROBE_ABOVE])
                if found[0][0] >= PROBE_ABOVE:
                    large.add(i)
        return frozenset(large)

    def statement(self, query: Query, restriction: Restriction, probed: frozenset[int] = frozenset()) -> Sql:
        """The page query (without the LIMIT value): what `search` runs, for EXPLAIN in the benchmark."""
        keys = [(sort_expression(k, "r"), k.descending) for k in query.sort]
        position = self.position(query)
        conditions = [self.where(query, restriction, probed)]
        if position is not None:
            conditions.append(after(keys, "r.id", position))
        where = all_of(conditions)
        order = order_by(keys, "r.id", position.backward if position else False)
        key_columns = "".join(f", {expr.text} AS k{i}" for i, (expr, _) in enumerate(keys))
        return Sql(f"SELECT {_COLS}{key_columns} FROM resources r WHERE {where.text} ORDER BY {order.text} LIMIT ?",
                   [*(p for expr, _ in keys for p in expr.params), *where.params, *order.params])

    def position(self, query: Query) -> Position | None:
        """Where the requested page starts (None: the first page)."""
        return decode(query.page, [sort_type(k) for k in query.sort]) if query.page else None

    async def count(self, query: Query, restriction: Restriction) -> int:
        where = self.where(query, restriction)
        rows = await fetch(self.store.db, f"SELECT COUNT(*) FROM resources r WHERE {where.text}", where.params)
        return int(rows[0][0]) if rows else 0

    async def search(self, type_: str, params: list[tuple[str, str]], restriction: Restriction,
                     strict: bool = False) -> Page:
        if type_ not in restriction.readable:
            raise insufficient_scope(type_, "a search")
        query = self.parse(type_, params, strict)
        includer = Includer(self.store.db, self.registry, restriction, self.max_count)
        includer.check(query.includes)
        page = Page(query, shape=shaper(query.summary, query.elements))
        if query.summary == "count" or query.count == 0:
            page.total = await self.count(query, restriction)
            return page
        await self._matches(page, restriction)
        if query.total in ("accurate", "estimate"):
            page.total = await self.count(query, restriction)
        elif query.total is None and query.page is None and page.next is None:
            page.total = len(page.matches)
        if query.includes:
            page.included = await includer.included(query.includes, page.matches)
        return page

    async def _matches(self, page: Page, restriction: Restriction) -> None:
        query = page.query
        statement = self.statement(query, restriction, await self.probed(query, restriction))
        rows = await fetch(self.store.db, statement.text, [*statement.params, query.count + 1])
        n_keys = len(query.sort)
        position = self.position(query)
        backward = position is not None and position.backward
        more = len(rows) > query.count
        rows = rows[:query.count]
        if backward:
            rows.reverse()
        page.matches = [stored(r) for r in rows]
        if not rows:
            return
        first, last = rows[0], rows[-1]
        if more or backward:
            page.next = Position(tuple(last[7:7 + n_keys]), last[1])
        if position is not None and (more or not backward):
            page.previous = Position(tuple(first[7:7 + n_keys]), first[1], backward=True)

    async def ids(self, type_: str, params: list[tuple[str, str]], restriction: Restriction,
                  limit: int) -> list[str]:
        """Ids of matches for conditional create/update/delete: strict, since a misread condition writes."""
        query = self.parse(type_, params, strict=True)
        query.count, query.sort, query.page = limit, [], None
        statement = self.statement(query, restriction)
        rows = await fetch(self.store.db, statement.text, [*statement.params, limit])
        return [r[1] for r in rows]

    def declared(self, type_: str) -> list[dict[str, str]]:
        return [p.declaration() for p in self.registry.of(type_)]

    def includes(self, type_: str) -> tuple[list[str], list[str]]:
        forward = [f"{type_}:{p.code}" for p in self.registry.references(type_)]
        reverse = [f"{source}:{p.code}" for source in sorted(self.registry.types)
                   for p in self.registry.references(source) if type_ in p.targets]
        return ([*forward, "*"] if forward else []), ([*reverse, "*"] if reverse else [])
