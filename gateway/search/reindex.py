"""Rebuilding the search index (`biobank-gateway reindex`): after a SearchParameter is added
to profiles/, or an extraction rule changes, existing resources get the rows new writes get.

Resources are read in id order in batches and each batch's rows replaced in one
transaction, so a reindex of a large store neither holds one huge transaction nor leaves
a resource half indexed; searches keep working (on the old rows) while it runs.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from gateway.search.params import Registry, default_registry
from gateway.store import Store, StoredResource
from gateway.store.index import table_rows, write_rows

BATCH = 500


async def reindex(store: Store, types: Iterable[str] | None = None, registry: Registry | None = None) -> int:
    """Rebuild the index rows of every current resource of `types` (default: all); returns how many."""
    registry = registry or default_registry()
    wanted = sorted(types) if types is not None else sorted(registry.types)
    done = 0
    for type_ in wanted:
        last = ""
        while True:
            rows = await store.db.fetchall(
                "SELECT id, deleted, content FROM resources WHERE type = ? AND id > ? ORDER BY id LIMIT ?",
                (type_, last, BATCH))
            if not rows:
                break
            written = [(StoredResource(type_, id_, 2, 0, bool(deleted), None, b""),
                        None if deleted else orjson.loads(bytes(content))) for id_, deleted, content in rows]
            async with store.db.transaction() as conn:
                await write_rows(conn, [(type_, r[0]) for r in rows], table_rows(registry, written), store.dialect)
            done += sum(1 for r in rows if not r[1])
            last = rows[-1][0]
    return done
