"""The search engine: parse, compile with the principal's restriction, run, page, include.

This is the `Searcher` the API layer holds (gateway.api.context): the search interactions
call `search` (one type) and `search_system` (several, `_type`), conditional interactions
`ids`, the CapabilityStatement `declared`, `declared_system` and `includes` — which list
exactly the parameters the registry serves, so the statement and the engine cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.access.gate import Restriction
from gateway.fhir.errors import Issue
from gateway.search import gated, probe, statement, total
from gateway.search.cursor import Position
from gateway.search.include import Includer
from gateway.search.params import Registry, default_registry
from gateway.search.query import Parser, Query
from gateway.search.shape import Shape, shaper
from gateway.search.shapes import Build, KeptStatements
from gateway.search.sql import Sql, fetch, fetch_generic, insufficient_scope, stored
from gateway.search.system import searched_types
from gateway.store import Store, StoredResource


@dataclass
class Page:
    """One page of a search: what the searchset Bundle is made of (before the egress gate)."""

    queries: list[Query]
    """One per searched type, with the same result parameters (type-level search: one)."""
    kept: list[tuple[str, str]] = field(default_factory=list)
    """The parameters understood, as sent (without `_page`): what the links repeat."""
    token: str | None = None
    issues: list[Issue] = field(default_factory=list)
    matches: list[StoredResource] = field(default_factory=list)
    included: list[StoredResource] = field(default_factory=list)
    total: int | None = None
    next: Position | None = None
    previous: Position | None = None
    shape: Shape | None = None


class Planned(NamedTuple):
    """A page statement and how PostgreSQL plans it."""

    sql: Sql
    generic: bool
    """Its plan does not depend on its values (probe.Counted.generic): planned once (sql.fetch_generic), not
    for the values of every run (sql.fetch)."""
    gated: bool = False
    """It decides its own plan (gated.py) and may answer that it could not (gated.undecided)."""


class SearchEngine:
    def __init__(self, store: Store, registry: Registry | None = None, *, base_url: str = "",
                 default_count: int = 20, max_count: int = 1000) -> None:
        self.store = store
        self.registry = registry or default_registry()
        self.base_url = base_url
        self.default_count = default_count
        self.max_count = max_count
        self.kept = KeptStatements()

    def parser(self, strict: bool) -> Parser:
        return Parser(self.registry, self.base_url, strict=strict, default_count=self.default_count,
                      max_count=self.max_count)

    def parse(self, type_: str, params: list[tuple[str, str]], strict: bool = False) -> Query:
        return self.parser(strict).parse(type_, params)

    def where(self, query: Query, restriction: Restriction) -> Sql:
        """The WHERE clause of the matches (alias `r`): criteria and restriction, no paging (bulk export's scans)."""
        return statement.where(query, restriction)

    async def page_statement(self, queries: Sequence[Query], restriction: Restriction, limit: int) -> Planned:
        """The statement of the requested page (`limit` rows): what `search` runs, for EXPLAIN in the benchmark (a
        gated one, if it answers undecided, is followed by the page planned for its values)."""
        start = statement.position(queries)
        dialect = self.store.dialect
        one = self._written(("gated", limit, dialect), queries, restriction, start,
                            lambda qs, r: gated.statement(qs, r, start, limit, dialect))
        if one is not None:
            return Planned(one, True, gated=True)
        counts = [await probe.counted(self.store.db, q, restriction, walks=len(queries) == 1) for q in queries]
        probes = [c.probes for c in counts]
        sql = self._written(("page", limit, dialect, *probes), queries, restriction, start,
                            lambda qs, r: statement.page_statement(qs, r, probes, start, limit, dialect))
        assert sql is not None
        return Planned(sql, len(counts) == 1 and counts[0].generic)

    def _written(self, purpose: tuple[object, ...], queries: Sequence[Query], restriction: Restriction,
                 start: Position | None, build: Build) -> Sql | None:
        """`build(queries, restriction)`: for a first page, from the statement kept for the queries' shape
        (shapes.py); a later page's position is not part of a shape, so its statement is written anew."""
        if start is None:
            return self.kept.statement(purpose, queries, restriction, build)
        return build(queries, restriction)

    async def search(self, type_: str, params: list[tuple[str, str]], restriction: Restriction,
                     strict: bool = False) -> Page:
        if type_ not in restriction.readable:
            raise insufficient_scope(type_, "a search")
        query = self.parse(type_, params, strict)
        return await self._run(Page([query], query.kept, query.page, query.issues), restriction)

    async def search_system(self, params: list[tuple[str, str]], restriction: Restriction,
                            strict: bool = False) -> Page:
        """A search across types (`_type`, else every readable stored type) with their common parameters."""
        types = searched_types(params, self.registry.types, restriction, strict)
        queries = self.parser(strict).parse_many(types.types, types.params)
        if not queries:
            return Page([], types.kept, None, types.issues, total=0)
        first = queries[0]
        return await self._run(Page(queries, [*types.kept, *first.kept], first.page, [*types.issues, *first.issues]),
                               restriction)

    async def _run(self, page: Page, restriction: Restriction) -> Page:
        query = page.queries[0]
        includer = Includer(self.store.db, self.registry, restriction, self.max_count)
        includer.check(query.includes)
        page.shape = shaper(query.summary, query.elements)
        seen, complete = 0, False
        if query.summary != "count" and query.count > 0:
            seen, complete = await self._matches(page, restriction)
        page.total = await total.total(self.store.db, page.queries, restriction, seen=seen, complete=complete)
        if query.includes and page.matches:
            page.included = await includer.included(query.includes, page.matches)
        return page

    async def _matches(self, page: Page, restriction: Restriction) -> tuple[int, bool]:
        """Fetch the page's matches and links; (rows fetched, whether they are every match)."""
        queries = page.queries
        count = queries[0].count
        start = statement.position(queries)
        planned = await self.page_statement(queries, restriction, count + 1)
        run = fetch_generic if planned.generic else fetch
        rows = await run(self.store.db, planned.sql.text, planned.sql.params)
        if planned.gated and gated.undecided(rows):
            # Left to the planner, as probe.counted decides there: no probes, planned for the values.
            sql = statement.page_statement(queries, restriction, [frozenset()], start, count + 1, self.store.dialect)
            rows = await fetch(self.store.db, sql.text, sql.params)
        n_keys = len(statement.key_types(queries))
        backward = start is not None and start.backward
        more = len(rows) > count
        fetched = len(rows)
        rows = rows[:count]
        if backward:
            rows.reverse()
        page.matches = [stored(r, restriction) for r in rows]
        if rows:
            if more or backward:
                page.next = statement.boundary(rows[-1], restriction, n_keys)
            if start is not None and (more or not backward):
                page.previous = statement.boundary(rows[0], restriction, n_keys, backward=True)
        return fetched, start is None and not more

    async def ids(self, type_: str, params: list[tuple[str, str]], restriction: Restriction,
                  limit: int) -> list[str]:
        """Ids of matches for conditional create/update/delete: strict, since a misread condition writes."""
        query = self.parse(type_, params, strict=True)
        query.sort, query.page = [], None
        sql = statement.page_statement([query], restriction, [frozenset()], None, limit)
        rows = await fetch(self.store.db, sql.text, sql.params)
        return [r[1] for r in rows]

    def declared(self, type_: str) -> list[dict[str, str]]:
        return [p.declaration() for p in self.registry.of(type_)]

    def declared_system(self) -> list[dict[str, str]]:
        """The parameters of a search without `_type`: those every stored type serves, declared as on the
        first type (their definitions are the same Resource-level SearchParameters)."""
        types = sorted(self.registry.types)
        common = set.intersection(*({p.code for p in self.registry.of(t)} for t in types))
        return [p.declaration() for p in self.registry.of(types[0]) if p.code in common]

    def includes(self, type_: str) -> tuple[list[str], list[str]]:
        forward = [f"{type_}:{p.code}" for p in self.registry.references(type_)]
        reverse = [f"{source}:{p.code}" for source in sorted(self.registry.types)
                   for p in self.registry.references(source) if type_ in p.targets]
        return ([*forward, "*"] if forward else []), ([*reverse, "*"] if reverse else [])
