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
from gateway.search.sql import RESOURCE_COLUMNS, Sql, all_of, fetch, insufficient_scope, live, marks, stored
from gateway.store import StoredResource
from gateway.store.database import Database

MAX_ROUNDS = 4
_COLS = ", ".join(f"r.{c}" for c in RESOURCE_COLUMNS)


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
            found = []
            for spec in active:
                found.extend(await self._apply(spec, frontier))
            frontier = []
            for resource in found:
                if (resource.type, resource.id) not in seen and len(out) < self.limit:
                    seen.add((resource.type, resource.id))
                    out.append(resource)
                    frontier.append(resource)
        return out

    async def _apply(self, spec: Include, frontier: list[StoredResource]) -> list[StoredResource]:
        by_type: dict[str, list[str]] = {}
        for resource in frontier:
            by_type.setdefault(resource.type, []).append(resource.id)
        out: list[StoredResource] = []
        for type_, ids in by_type.items():
            for source, target, params in (self._reverse(spec, type_) if spec.reverse else self._forward(spec, type_)):
                out.extend(await self._fetch(source, target, params, ids, spec.reverse))
        return out

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

    async def _fetch(self, source: str, target: str, params: list[SearchParam], ids: list[str],
                     reverse: bool) -> list[StoredResource]:
        codes = [p.code for p in params]
        wanted, known, pick = (source, "ref_id", "id") if reverse else (target, "id", "ref_id")
        refs = Sql(f"SELECT f.{pick} FROM search_reference f WHERE f.type = ? AND f.param IN ({marks(codes)}) "
                   f"AND f.ref_type = ? AND f.{known} IN ({marks(ids)})", [source, *codes, target, *ids])
        where = all_of([live("r", wanted, self.restriction), Sql(f"r.id IN ({refs.text})", refs.params)])
        rows = await fetch(self.db, f"SELECT {_COLS} FROM resources r WHERE {where.text} LIMIT ?",
                           [*where.params, self.limit])
        return [stored(r) for r in rows]
