"""`_include` and `_revinclude`, with `:iterate` and `*` (search.html#include).

Includes are fetched by SQL that carries the principal's restriction (`sql.live`), so a
resource the principal may not see is never loaded, let alone counted or sent. Naming a
type the principal may not read is refused (403 insufficient_scope) rather than silently
emptied: the client learns about its scopes, never about data. Wildcards only ever reach
readable types. `:iterate` follows newly included resources a bounded number of rounds.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.access.gate import Restriction
from gateway.search.params import Registry, SearchParam
from gateway.search.query import Include
from gateway.search.sql import (
    Sql,
    all_of,
    any_value,
    columns,
    decision_join,
    fetch_generic,
    insufficient_scope,
    live,
    marks,
    stored,
)
from gateway.store import StoredResource
from gateway.store.database import Database

MAX_ROUNDS = 4


class Includer:
    def __init__(self, db: Database, registry: Registry, restriction: Restriction, limit: int) -> None:
        self.db = db
        self.registry = registry
        self.restriction = restriction
        self.limit = limit

    def check(self, specs: list[Include]) -> None:
        """Refuse (403) an include that names only types the principal may not read — whether or not
        anything matched, so the answer does not depend on data the principal cannot see."""
        for spec in specs:
            what = f"{'_revinclude' if spec.reverse else '_include'}={spec.source}:{spec.param}"
            if spec.reverse and spec.source != "*" and spec.source not in self.restriction.readable:
                raise insufficient_scope(spec.source, what)
            if not spec.reverse and spec.source != "*" and spec.param != "*":
                param = self.registry.get(spec.source, spec.param)
                targets = (spec.target,) if spec.target else param.targets if param else ()
                if targets and not any(t in self.restriction.readable for t in targets):
                    raise insufficient_scope("/".join(targets), what)
            if spec.target is not None and spec.target not in self.restriction.readable:
                raise insufficient_scope(spec.target, what)

    async def included(self, specs: list[Include], matches: list[StoredResource]) -> list[StoredResource]:
        """Resources the specs reach from `matches` (and, for `:iterate`, from what they reached), once each."""
        seen = {(m.type, m.id) for m in matches}
        out: list[StoredResource] = []
        frontier = matches
        for round_ in range(MAX_ROUNDS):
            active = [s for s in specs if round_ == 0 or s.iterate]
            if not active or not frontier:
                break
            found = await self._round(active, frontier)
            frontier = []
            for resource in found:
                if (resource.type, resource.id) not in seen and len(out) < self.limit:
                    seen.add((resource.type, resource.id))
                    out.append(resource)
                    frontier.append(resource)
        return out

    async def _round(self, specs: list[Include], frontier: list[StoredResource]) -> list[StoredResource]:
        """What `specs` reach from `frontier`, in one statement: every (spec, frontier type, target type) is a
        part of its own (with its own LIMIT), so a round is one round trip however many types a reference
        parameter can point at (`Specimen:subject`: Patient, Group, ...). Parts come back in the order
        they are listed, as separate statements would: the order decides which resources make the cut at
        `limit`, and the order of the include entries."""
        by_type: dict[str, list[str]] = {}
        for resource in frontier:
            by_type.setdefault(resource.type, []).append(resource.id)
        parts = [self._part(source, target, params, ids, spec.reverse)
                 for spec in specs for type_, ids in by_type.items()
                 for source, target, params in (self._reverse(spec, type_) if spec.reverse
                                                else self._forward(spec, type_))]
        if not parts:
            return []
        union = " UNION ALL ".join(f"SELECT i{n}.*, {n} AS part FROM ({p.text}) AS i{n}" for n, p in enumerate(parts))
        rows = await fetch_generic(self.db, union, [x for p in parts for x in p.params])
        return [stored(r, self.restriction) for r in sorted(rows, key=lambda r: r[-1])]

    def _params(self, type_: str, code: str) -> list[SearchParam]:
        if code == "*":
            return self.registry.references(type_)
        param = self.registry.get(type_, code)
        return [param] if param is not None else []

    def _forward(self, spec: Include, type_: str) -> Iterable[tuple[str, str, list[SearchParam]]]:
        """(source type, target type, parameters) for `_include` from resources of `type_`."""
        if spec.source not in ("*", type_):
            return
        by_target: dict[str, list[SearchParam]] = {}
        for param in self._params(type_, spec.param):
            targets = (spec.target,) if spec.target else param.targets
            for target in (t for t in targets if t in self.restriction.readable):
                by_target.setdefault(target, []).append(param)
        for target, params in by_target.items():
            yield type_, target, params

    def _reverse(self, spec: Include, type_: str) -> Iterable[tuple[str, str, list[SearchParam]]]:
        """(source type, target type, parameters) for `_revinclude` of resources of `type_`."""
        if spec.target not in (None, type_):
            return
        sources = sorted(self.registry.types) if spec.source == "*" else [spec.source]
        for source in sources:
            params = [p for p in self._params(source, spec.param) if type_ in p.targets]
            if params and source in self.restriction.readable:
                yield source, type_, params

    def _part(self, source: str, target: str, params: list[SearchParam], ids: list[str], reverse: bool) -> Sql:
        """The live `target` resources that `ids` (of `source` when forward, of `target` when reverse) reach by
        `params`, at most `limit` of them."""
        codes = [p.code for p in params]
        wanted, known, pick = (source, "ref_id", "id") if reverse else (target, "id", "ref_id")
        listed = any_value(self.db.dialect, f"f.{known}", ids)
        refs = Sql(f"SELECT f.{pick} FROM search_reference f WHERE f.type = ? AND f.param IN ({marks(codes)}) "
                   f"AND f.ref_type = ? AND {listed.text}", [source, *codes, target, *listed.params])
        where = all_of([live("r", wanted, self.restriction, decided=True), Sql(f"r.id IN ({refs.text})", refs.params)])
        return Sql(f"SELECT {columns('r', self.restriction)} FROM resources r{decision_join('r', self.restriction)} "
                   f"WHERE {where.text} LIMIT ?", [*where.params, self.limit])
