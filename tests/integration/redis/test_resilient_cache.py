"""ResilientCache: misses fast while the primary is down, probes once, never serves stale."""

from __future__ import annotations

import logging
import time

import anyio
import pytest

from skr.adapters.memory.cache import MemoryCache
from skr.adapters.redis.cache import RedisCache
from skr.adapters.redis.resilient_cache import EPOCH_ID, ResilientCache
from skr.domain.errors import DependencyError
from tests.fixtures.redis import closed_loopback_port

pytestmark = pytest.mark.anyio

WINDOW = 0.1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class BreakablePrimary:
    """A fake primary over MemoryCache that raises DependencyError while ``broken``."""

    def __init__(self) -> None:
        self.inner = MemoryCache(100)
        self.broken = False
        self.calls = 0
        self.paused: dict[str, anyio.Event] = {}

    async def _enter(self, pause_on: str = "") -> None:
        self.calls += 1
        if pause_on in self.paused:
            await self.paused[pause_on].wait()
        if self.broken:
            raise DependencyError("primary is broken")

    async def ping(self) -> None:
        await self._enter()

    async def get(self, key: str) -> bytes | None:
        await self._enter()
        return await self.inner.get(key)

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        await self._enter()
        await self.inner.set(key, value, ttl_seconds)

    async def generation(self, collection_id: str) -> int:
        await self._enter()
        return await self.inner.generation(collection_id)

    async def bump_generation(self, collection_id: str) -> None:
        await self._enter(collection_id)
        await self.inner.bump_generation(collection_id)


async def test_dead_redis_gives_fast_misses_and_never_raises() -> None:
    states: list[bool] = []
    url = f"redis://127.0.0.1:{closed_loopback_port()}/0"
    async with RedisCache(url, connect_timeout_seconds=0.5) as redis_cache:
        cache = ResilientCache(redis_cache, retry_after_seconds=30, on_state_change=states.append)
        assert await cache.get("k") is None
        assert cache.degraded
        assert states == [True]
        for _ in range(3):
            started = time.monotonic()
            assert await cache.get("k") is None
            await cache.set("k", b"v", 60)
            first, second = await cache.generation("c"), await cache.generation("c")
            await cache.bump_generation("c")
            assert time.monotonic() - started < 0.2
            assert first < 0 and second < 0 and first != second
        with pytest.raises(DependencyError):
            await cache.ping()
    assert states == [True]


async def test_retry_window_skips_the_primary_then_one_probe_recovers() -> None:
    primary = BreakablePrimary()
    states: list[bool] = []
    cache = ResilientCache(primary, retry_after_seconds=WINDOW, on_state_change=states.append)
    await cache.set("k", b"v", 60)
    primary.broken = True
    assert await cache.get("k") is None
    assert cache.degraded
    calls = primary.calls
    primary.broken = False
    for _ in range(10):
        assert await cache.get("k") is None
        await cache.set("k2", b"v", 60)
        await cache.bump_generation("c")
        assert await cache.generation("c") < 0
    assert primary.calls == calls
    await anyio.sleep(WINDOW * 1.5)
    assert await cache.get("k") == b"v"
    assert primary.calls == calls + 2  # the probe, then the get itself
    assert not cache.degraded
    assert states == [True, False]


async def test_failed_probe_stays_degraded_and_rearms_the_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    primary = BreakablePrimary()
    cache = ResilientCache(primary, retry_after_seconds=WINDOW)
    primary.broken = True
    with caplog.at_level(logging.WARNING, logger="skr.adapters.redis.resilient_cache"):
        await cache.get("k")
        for _ in range(2):
            await anyio.sleep(WINDOW * 1.5)
            calls = primary.calls
            assert await cache.get("k") is None
            assert primary.calls == calls + 1  # one probe, not the get
            assert await cache.get("k") is None
            assert primary.calls == calls + 1
            assert cache.degraded
    assert len(caplog.records) == 1


async def test_bump_lost_in_an_outage_does_not_leave_stale_entries_fresh() -> None:
    primary = BreakablePrimary()
    cache = ResilientCache(primary, retry_after_seconds=WINDOW)
    before = await cache.generation("c")
    await cache.set(f"search:c:{before}:q", b"old results", 60)
    primary.broken = True
    await cache.bump_generation("c")  # the content changed, but Redis is down
    await cache.bump_generation("c")
    assert await primary.inner.generation("c") == 0  # really lost
    primary.broken = False
    await anyio.sleep(WINDOW * 1.5)
    after = await cache.generation("c")
    assert not cache.degraded
    assert after >= 0
    assert after != before
    assert await cache.get(f"search:c:{after}:q") is None


async def test_failure_during_the_probe_keeps_it_degraded() -> None:
    primary = BreakablePrimary()
    cache = ResilientCache(primary, retry_after_seconds=WINDOW)
    in_flight_bump, probe = anyio.Event(), anyio.Event()
    primary.paused = {"c": in_flight_bump, EPOCH_ID: probe}
    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.bump_generation, "c")  # begun before the outage, still waiting
        await anyio.wait_all_tasks_blocked()
        primary.broken = True
        await cache.get("k")
        primary.broken = False
        await anyio.sleep(WINDOW * 1.5)
        probed: list[bytes | None] = []

        async def read() -> None:
            probed.append(await cache.get("k"))

        tg.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        primary.broken = True
        in_flight_bump.set()  # the old bump fails while the probe is in the air
        await anyio.wait_all_tasks_blocked()
        primary.broken = False
        probe.set()
    assert probed == [None]
    assert cache.degraded
