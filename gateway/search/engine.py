"""Search engine (first cut: `_id` only; the search issue replaces this module)."""

from __future__ import annotations

from gateway.access.gate import Restriction
from gateway.fhir.errors import FhirError
from gateway.store import Store


class SearchEngine:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def ids(self, type_: str, params: list[tuple[str, str]], restriction: Restriction,
                  limit: int) -> list[str]:
        wanted = [v for k, v in params if k == "_id"]
        if len(wanted) != len(params):
            raise FhirError.of(400, "not-supported", "only _id is searchable so far")
        found = []
        for id_ in wanted:
            stored = await self.store.read(type_, id_)
            if stored and not stored.deleted and restriction.allows_type(type_):
                found.append(id_)
        return found[:limit]

    def declared(self, type_: str) -> list[dict[str, str]]:
        return []

    def includes(self, type_: str) -> tuple[list[str], list[str]]:
        return [], []
