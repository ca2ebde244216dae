"""A circuit breaker in front of the EHR, its state in the shared cache.

With Redis every gateway instance sees the same state, so a dead EHR costs the first few
requests of the whole deployment, not of every process; without Redis the cache is this
process's own. Closed: calls pass, consecutive failures are counted. Open (after
`failures` in a row): calls are refused at once until `reset` seconds have passed.
Half-open: exactly one caller, across instances, gets to probe; its success closes the
breaker, its failure opens it for another `reset` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.cache import Cache

OPEN, FAILS, PROBE = "ehr:breaker:open", "ehr:breaker:fails", "ehr:breaker:probe"


class BreakerOpen(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"circuit open, retry in {retry_after:.1f} s")
        self.retry_after = retry_after


class CircuitBreaker:
    def __init__(self, cache: Cache, failures: int = 5, reset: float = 30.0, probe_timeout: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.cache = cache
        self.failures = failures
        self.reset = reset
        self.probe_timeout = probe_timeout
        self.clock = clock

    async def enter(self) -> bool:
        """Let a call through, or raise BreakerOpen. True when this call is the half-open probe."""
        raw = await self.cache.get(OPEN)
        if raw is None:
            return False
        wait = float(raw) - self.clock()
        if wait > 0:
            raise BreakerOpen(wait)
        if not await self.cache.add(PROBE, b"1", self.probe_timeout):
            raise BreakerOpen(1.0)
        return True

    async def succeeded(self, probe: bool) -> None:
        await self.cache.delete(FAILS)
        if probe:
            await self.cache.delete(OPEN)
            await self.cache.delete(PROBE)

    async def failed(self, probe: bool) -> None:
        count = await self.cache.incr(FAILS, ttl=self.reset * 10)
        if probe or count >= self.failures:
            await self.cache.set(OPEN, repr(self.clock() + self.reset).encode(), ttl=self.reset * 10)
            await self.cache.delete(PROBE)

    async def state(self) -> str:
        """closed | open | half-open, for /readyz."""
        raw = await self.cache.get(OPEN)
        if raw is None:
            return "closed"
        return "open" if float(raw) > self.clock() else "half-open"
