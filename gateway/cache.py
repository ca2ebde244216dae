"""The small shared-state backend: Redis when `GATEWAY_REDIS_URL` is set, in-process otherwise.

What several gateway instances must agree on lives here (ARCHITECTURE.md): client-assertion
`jti` replay protection, token-bucket rate limits, cached JWKS and upstream answers, and
broadcasts such as "this token was revoked" or "this subject's consent changed".

Every key is prefixed with `settings.redis_prefix`, so several gateways (or test runs) can
share one Redis. Values are bytes; TTLs are seconds.

Failure semantics are the caller's decision, because they differ by use (issue 12):
`RedisCache` raises :class:`CacheUnavailable` when Redis cannot be reached. Security
checks that must fail closed (jti replay) call the cache directly and refuse on that
error; everything that may degrade to per-instance state (rate limits, caches) uses
:meth:`Cache.resilient`, which falls back to an in-process cache while Redis is down and
uses Redis again as soon as it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger("gateway.cache")

Handler = Callable[[bytes], None]


class CacheUnavailable(Exception):
    """The shared backend (Redis) did not answer; the caller decides whether to fail open or closed."""


class Cache:
    """The operations every backend offers. Keys are given without the prefix."""

    async def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        raise NotImplementedError

    async def delete(self, key: str) -> None:
        raise NotImplementedError

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        """Store `value` only if `key` is absent (atomically across instances); True when stored."""
        raise NotImplementedError

    async def incr(self, key: str, ttl: float | None = None) -> int:
        """Add one to a counter (created at 0, with `ttl` on creation) and return the new value."""
        raise NotImplementedError

    async def take(self, key: str, rate: float, burst: float) -> float:
        """Token bucket of `burst` tokens refilled at `rate`/s: 0.0 when one token was taken,
        else the seconds until one is available (the Retry-After of a 429)."""
        raise NotImplementedError

    async def publish(self, channel: str, message: bytes) -> None:
        """Send `message` to the subscribers of `channel` on every instance (this one included)."""
        raise NotImplementedError

    def subscribe(self, channel: str, handler: Handler) -> None:
        """Call `handler(message)` for every message published on `channel`, from any instance."""
        raise NotImplementedError

    async def ping(self) -> bool:
        """True when the backend answers (readiness checks)."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def resilient(self) -> Cache:
        """A view of this cache that never raises CacheUnavailable (see the module docstring)."""
        return self


class MemoryCache(Cache):
    """One process's state: the backend of a single instance, and the fallback while Redis is down.

    Bounded, least recently used first out: beyond `max_entries` keys the entries least recently
    read or written are dropped, so a hot EHR answer survives a burst of one-off lookups.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._handlers: dict[str, list[Handler]] = {}
        self.max_entries = max_entries

    def _live(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def _store(self, key: str, value: bytes, ttl: float | None, expires: float | None = None) -> None:
        self._data[key] = (value, time.monotonic() + ttl if ttl is not None else expires)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._store(key, value, ttl)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        if self._live(key) is not None:
            return False
        self._store(key, value, ttl)
        return True

    async def incr(self, key: str, ttl: float | None = None) -> int:
        if self._live(key) is None:
            self._store(key, b"1", ttl)
            return 1
        current, expires = self._data[key]
        self._store(key, str(int(current) + 1).encode(), None, expires)
        return int(current) + 1

    async def take(self, key: str, rate: float, burst: float) -> float:
        now = time.monotonic()
        tokens, last = self._buckets.pop(key, (burst, now))
        if len(self._buckets) >= self.max_entries:
            del self._buckets[next(iter(self._buckets))]
        tokens = min(burst, tokens + (now - last) * rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / rate

    async def publish(self, channel: str, message: bytes) -> None:
        for handler in self._handlers.get(channel, []):
            handler(message)

    def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers.setdefault(channel, []).append(handler)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()


# KEYS[1] bucket; ARGV rate, burst, now (s). Returns seconds to wait, "0" when a token was taken.
_TAKE = """
local b = redis.call('HMGET', KEYS[1], 't', 'ts')
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""


class RedisCache(Cache):
    """Shared by every instance pointed at the same Redis. Fails fast (short socket timeouts)
    so a dead Redis costs milliseconds, not the client's patience."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as redis

        self.prefix = prefix
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0)
        self._take = self._client.register_script(_TAKE)
        self._handlers: dict[str, list[Handler]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._fallback = MemoryCache()

    async def _call(self, op: Awaitable[Any]) -> Any:
        try:
            return await op
        except self._errors as exc:
            raise CacheUnavailable(f"Redis is unavailable: {type(exc).__name__}: {exc}") from exc

    async def get(self, key: str) -> bytes | None:
        return await self._call(self._client.get(self.prefix + key))

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self._call(self._client.set(self.prefix + key, value, px=int(ttl * 1000) if ttl else None))

    async def delete(self, key: str) -> None:
        await self._call(self._client.delete(self.prefix + key))

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        return bool(await self._call(self._client.set(self.prefix + key, value, nx=True,
                                                      px=max(1, int(ttl * 1000)))))

    async def incr(self, key: str, ttl: float | None = None) -> int:
        value = int(await self._call(self._client.incr(self.prefix + key)))
        if value == 1 and ttl:
            await self._call(self._client.pexpire(self.prefix + key, int(ttl * 1000)))
        return value

    async def take(self, key: str, rate: float, burst: float) -> float:
        wait = await self._call(self._take(keys=[self.prefix + key], args=[rate, burst, time.time()]))
        return float(wait)

    async def publish(self, channel: str, message: bytes) -> None:
        await self._call(self._client.publish(self.prefix + channel, message))

    def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers.setdefault(self.prefix + channel, []).append(handler)
        if self._listener is not None:
            self._listener.cancel()
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        """Deliver published messages; reconnect (every second) while Redis is down."""
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(*self._handlers)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        for handler in self._handlers.get(message["channel"].decode(), []):
                            handler(message["data"])
            except self._errors as exc:
                log.warning("redis subscription lost; retrying", error=str(exc))
                with contextlib.suppress(*self._errors):
                    await pubsub.aclose()
                await asyncio.sleep(1.0)

    async def ping(self) -> bool:
        try:
            return bool(await self._call(self._client.ping()))
        except CacheUnavailable:
            return False

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.wait([self._listener], timeout=1.0)
        await self._client.aclose()

    def resilient(self) -> Cache:
        return _Resilient(self, self._fallback)


class _Resilient(Cache):
    """Redis first; the in-process fallback for the calls Redis could not answer."""

    def __init__(self, primary: RedisCache, fallback: MemoryCache) -> None:
        self.primary, self.fallback = primary, fallback

    async def _either(self, name: str, *args: Any) -> Any:
        try:
            return await getattr(self.primary, name)(*args)
        except CacheUnavailable as exc:
            log.warning("shared cache down; using this instance's own", op=name, error=str(exc))
            return await getattr(self.fallback, name)(*args)

    async def get(self, key: str) -> bytes | None:
        return await self._either("get", key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self._either("set", key, value, ttl)

    async def delete(self, key: str) -> None:
        await self._either("delete", key)

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        return await self._either("add", key, value, ttl)

    async def incr(self, key: str, ttl: float | None = None) -> int:
        return await self._either("incr", key, ttl)

    async def take(self, key: str, rate: float, burst: float) -> float:
        return await self._either("take", key, rate, burst)

    async def publish(self, channel: str, message: bytes) -> None:
        try:
            await self.primary.publish(channel, message)
        except CacheUnavailable as exc:
            log.warning("shared cache down; message delivered to this instance only", channel=channel,
                        error=str(exc))
            for handler in self.primary._handlers.get(self.primary.prefix + channel, []):
                handler(message)

    def subscribe(self, channel: str, handler: Handler) -> None:
        self.primary.subscribe(channel, handler)

    async def ping(self) -> bool:
        return await self.primary.ping()

    async def close(self) -> None:
        await self.primary.close()


def open_cache(redis_url: str | None, prefix: str) -> Cache:
    """Redis when a URL is configured, else this process's own memory."""
    return RedisCache(redis_url, prefix) if redis_url else MemoryCache()
