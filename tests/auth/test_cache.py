"""The shared-state backend, the same contract in-process and on the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.cache import Cache, CacheUnavailable, MemoryCache, RedisCache
from tests.conftest import free_port


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    if request.param == "memory":
        yield MemoryCache()
        return
    backend = RedisCache(request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix"))
    yield backend
    await backend.close()


async def test_set_get_ttl_and_delete(cache: Cache) -> None:
    await cache.set("a", b"1", ttl=0.2)
    assert await cache.get("a") == b"1"
    await asyncio.sleep(0.3)
    assert await cache.get("a") is None
    await cache.set("b", b"2")
    await cache.delete("b")
    assert await cache.get("b") is None


async def test_add_is_set_if_absent(cache: Cache) -> None:
    assert await cache.add("jti:x", b"1", ttl=5) is True
    assert await cache.add("jti:x", b"1", ttl=5) is False


async def test_incr_counts(cache: Cache) -> None:
    assert [await cache.incr("n", ttl=5) for _ in range(3)] == [1, 2, 3]


async def test_token_bucket_allows_the_burst_then_says_how_long_to_wait(cache: Cache) -> None:
    waits = [await cache.take("bucket", rate=1.0, burst=3) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 0 < waits[3] <= 1.0


async def test_publish_reaches_subscribers(cache: Cache) -> None:
    got: list[bytes] = []
    cache.subscribe("news", got.append)
    await asyncio.sleep(0.2)  # Redis: the listener subscribes
    await cache.publish("news", b"revoked")
    for _ in range(20):
        if got:
            break
        await asyncio.sleep(0.05)
    assert got == [b"revoked"]


async def test_redis_down_raises_and_the_resilient_view_falls_back() -> None:
    down = RedisCache(f"redis://127.0.0.1:{free_port()}/0", "gwtest:down:")
    with pytest.raises(CacheUnavailable):
        await down.add("jti:x", b"1", ttl=5)
    assert await down.ping() is False
    resilient = down.resilient()
    assert await resilient.take("bucket", rate=1.0, burst=1) == 0.0
    await resilient.set("k", b"v")
    assert await resilient.get("k") == b"v"
    await down.close()


async def test_memory_cache_evicts_the_least_recently_used_entry() -> None:
    """Without Redis the EHR answer cache is this LRU: a key read recently outlives older ones."""
    cache = MemoryCache(max_entries=2)
    await cache.set("hot", b"1")
    await cache.set("cold", b"2")
    assert await cache.get("hot") == b"1"  # now the most recently used
    await cache.set("new", b"3")
    assert await cache.get("cold") is None
    assert await cache.get("hot") == b"1"
    assert await cache.get("new") == b"3"
