"""The cache of upstream answers, per (upstream query, disclosure class).

What is cached is the answer already rewritten for its class (internal: the EHR's ids;
external: gateway ids), never what a principal finally received: the egress gate runs on
every request, so a consent withdrawn a second ago is honoured even on a cache hit. A
fresh entry is served without asking the EHR; a stale one is revalidated with its ETag
(`If-None-Match`, a 304 renews it). Redis when configured, so every instance shares it;
the in-process cache (bounded) otherwise.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

from gateway.cache import Cache
from gateway.ehr.client import EhrClient, Upstream
from gateway.observability import metrics

Build = Callable[[Upstream], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Cached:
    fresh_until: float
    etag: str | None
    payload: dict[str, Any]


class AnswerCache:
    def __init__(self, cache: Cache, client: EhrClient, ttl: float = 60.0, stale_ttl: float = 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.cache = cache
        self.client = client
        self.ttl = ttl
        self.stale_ttl = stale_ttl
        self.clock = clock

    @staticmethod
    def key(audience: str, ref: str, params: list[tuple[str, str]]) -> str:
        query = f"{ref}?{urlencode(params)}" if params else ref
        return f"ehr:ans:{audience}:{hashlib.sha256(query.encode()).hexdigest()[:40]}"

    async def _load(self, key: str) -> Cached | None:
        raw = await self.cache.get(key)
        if raw is None:
            return None
        item = orjson.loads(raw)
        return Cached(item["f"], item["e"], item["d"])

    async def _store(self, key: str, etag: str | None, payload: dict[str, Any]) -> None:
        item = {"f": self.clock() + self.ttl, "e": etag, "d": payload}
        await self.cache.set(key, orjson.dumps(item), ttl=self.ttl + self.stale_ttl if etag else self.ttl)

    async def fetch(self, audience: str, ref: str, params: list[tuple[str, str]], build: Build,
                    bypass: bool = False) -> tuple[dict[str, Any], str]:
        """The payload for this query and class, and how it was got: hit | revalidated | miss.
        `bypass` (the client's `Cache-Control: no-cache`) asks the EHR whatever is cached."""
        key = self.key(audience, ref, params)
        cached = None if bypass else await self._load(key)
        fresh = cached is not None and cached.fresh_until > self.clock()
        metrics.cache_lookup("ehr-answers", fresh)
        if fresh:
            return cached.payload, "hit"
        answer = await self.client.get(ref, params, etag=cached.etag if cached else None)
        if answer.status == 304 and cached is not None:
            await self._store(key, cached.etag, cached.payload)
            return cached.payload, "revalidated"
        payload = await build(answer)
        await self._store(key, answer.etag, payload)
        return payload, "miss"
