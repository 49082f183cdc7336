"""The Cache contract: memory, Redis and resilient-over-Redis caches behave the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from skr.adapters.memory.cache import MemoryCache
from skr.adapters.redis.cache import RedisCache
from skr.adapters.redis.resilient_cache import ResilientCache
from skr.ports.cache import Cache
from tests.fixtures.kinds import class_id
from tests.fixtures.redis import fresh_redis_cache

pytestmark = pytest.mark.anyio

CACHE_KINDS = [MemoryCache, RedisCache, ResilientCache]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def make_cache(kind: type) -> AsyncIterator[Cache]:
    if kind is MemoryCache:
        yield MemoryCache(100)
        return
    async with fresh_redis_cache() as redis_cache:
        if kind is RedisCache:
            yield redis_cache
        else:
            yield ResilientCache(redis_cache, retry_after_seconds=1.0)


@pytest.fixture(params=CACHE_KINDS, ids=class_id)
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    async with make_cache(request.param) as built:
        yield built


async def test_set_then_get_round_trips_bytes(cache: Cache) -> None:
    value = bytes(range(256)) * 4
    await cache.set("search:é key with spaces", value, 60)
    assert await cache.get("search:é key with spaces") == value


async def test_missing_key_is_none(cache: Cache) -> None:
    assert await cache.get("never-set") is None


async def test_set_overwrites(cache: Cache) -> None:
    await cache.set("k", b"first", 60)
    await cache.set("k", b"second", 60)
    assert await cache.get("k") == b"second"


async def test_keys_are_independent(cache: Cache) -> None:
    await cache.set("a", b"1", 60)
    await cache.set("b", b"2", 60)
    assert (await cache.get("a"), await cache.get("b")) == (b"1", b"2")


async def test_entries_expire_after_their_ttl(cache: Cache) -> None:
    await cache.set("short", b"v", 0.2)
    await cache.set("long", b"v", 60)
    assert await cache.get("short") == b"v"
    await anyio.sleep(0.35)
    assert await cache.get("short") is None
    assert await cache.get("long") == b"v"


async def test_non_positive_ttl_stores_nothing(cache: Cache) -> None:
    await cache.set("zero", b"v", 0)
    await cache.set("negative", b"v", -1)
    assert await cache.get("zero") is None
    assert await cache.get("negative") is None


async def test_generation_starts_at_zero_and_increments(cache: Cache) -> None:
    assert await cache.generation("c1") == 0
    await cache.bump_generation("c1")
    assert await cache.generation("c1") == 1
    await cache.bump_generation("c1")
    assert await cache.generation("c1") == 2


async def test_generations_are_per_collection(cache: Cache) -> None:
    await cache.bump_generation("c1")
    await cache.bump_generation("c1")
    await cache.bump_generation("c2")
    assert await cache.generation("c1") == 2
    assert await cache.generation("c2") == 1
    assert await cache.generation("c3") == 0


async def test_a_cache_key_cannot_clobber_a_generation(cache: Cache) -> None:
    await cache.bump_generation("c1")
    await cache.set("gen:c1", b"not a number", 60)
    assert await cache.generation("c1") == 1
    assert await cache.get("gen:c1") == b"not a number"
