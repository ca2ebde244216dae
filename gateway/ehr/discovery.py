"""What the EHR says about itself: its SMART configuration (where to get a token) and its
CapabilityStatement (which search parameters it really supports).

Fetched on first use, not at start-up, so the gateway starts (and serves its own
resources) while the EHR is down; kept for `ttl` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from gateway.ehr import failures
from gateway.ehr.client import EhrClient


def search_params(capability: dict[str, Any]) -> dict[str, frozenset[str]]:
    """Per resource type, the names of the search parameters the server declares ("*": for every type)."""
    out: dict[str, frozenset[str]] = {}
    for rest in capability.get("rest") or []:
        if rest.get("mode", "server") != "server":
            continue
        out["*"] = frozenset(p.get("name", "") for p in rest.get("searchParam") or [])
        for resource in rest.get("resource") or []:
            out[resource.get("type", "")] = frozenset(p.get("name", "") for p in resource.get("searchParam") or [])
    return out


class Discovery:
    def __init__(self, client: EhrClient, ttl: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self._docs: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = asyncio.Lock()

    async def _document(self, ref: str) -> dict[str, Any]:
        cached = self._docs.get(ref)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        async with self._lock:
            cached = self._docs.get(ref)
            if cached is None or cached[0] <= self.clock():
                answer = await self.client.get(ref, authed=False)
                assert answer.body is not None
                cached = (self.clock() + self.ttl, answer.body)
                self._docs[ref] = cached
        return cached[1]

    async def token_endpoint(self) -> str:
        config = await self._document(".well-known/smart-configuration")
        url = config.get("token_endpoint")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise failures.garbage("the SMART configuration names no token_endpoint")
        return url

    async def search_params(self, type_: str) -> frozenset[str]:
        capability = await self._document("metadata")
        if capability.get("resourceType") != "CapabilityStatement":
            raise failures.garbage("/metadata is not a CapabilityStatement")
        declared = search_params(capability)
        return declared.get(type_, frozenset()) | declared.get("*", frozenset())
