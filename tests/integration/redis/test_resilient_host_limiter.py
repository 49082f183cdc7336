"""ResilientHostLimiter: falls back per call, warns rarely, recovers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import pytest

from skr.adapters.memory.host_limiter import InMemoryHostLimiter
from skr.adapters.redis.host_limiter import RedisHostLimiter
from skr.adapters.redis.resilient_host_limiter import ResilientHostLimiter
from skr.domain.errors import DependencyError
from tests.fixtures.concurrency import EPS
from tests.fixtures.redis import dead_redis_client

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class BreakableLimiter:
    """A fake primary over InMemoryHostLimiter that raises DependencyError while broken."""

    def __init__(self) -> None:
        self.inner = InMemoryHostLimiter()
        self.broken = False
        self.calls = 0

    def _enter(self) -> None:
        self.calls += 1
        if self.broken:
            raise DependencyError("primary is broken")

    async def wait_turn(self, host: str, interval_seconds: float) -> None:
        self._enter()
        await self.inner.wait_turn(host, interval_seconds)

    async def hold_off(self, host: str, seconds: float) -> None:
        self._enter()
        await self.inner.hold_off(host, seconds)

    def slot(
        self, host: str, limit: int, lease_seconds: float, wait_seconds: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        return self._slot(host, limit, lease_seconds, wait_seconds)

    @asynccontextmanager
    async def _slot(
        self, host: str, limit: int, lease_seconds: float, wait_seconds: float | None
    ) -> AsyncIterator[None]:
        self._enter()
        async with self.inner.slot(host, limit, lease_seconds, wait_seconds):
            yield


async def test_resilient_limiter_warns_once_while_redis_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with dead_redis_client() as client:
        limiter = ResilientHostLimiter(
            RedisHostLimiter(client, "skr-test:host:unreachable:"),
            InMemoryHostLimiter(),
            retry_after_seconds=0.05,
        )
        with caplog.at_level(logging.WARNING, logger="skr.adapters.redis.resilient_host_limiter"):
            t0 = anyio.current_time()
            for _ in range(4):
                await limiter.wait_turn("a.example", 0.1)
                await limiter.hold_off("b.example", 0.01)
                async with limiter.slot("a.example", 1, 1.0):
                    pass
            assert anyio.current_time() - t0 >= 0.3 - EPS
        assert limiter.degraded
        assert len(caplog.records) == 1


async def test_resilient_limiter_skips_a_failed_primary_then_recovers() -> None:
    primary = BreakableLimiter()
    limiter = ResilientHostLimiter(primary, InMemoryHostLimiter(), retry_after_seconds=0.2)
    primary.broken = True
    await limiter.wait_turn("a.example", 0.01)
    assert limiter.degraded
    calls = primary.calls
    await limiter.wait_turn("a.example", 0.01)
    assert primary.calls == calls  # inside the retry window the primary is not touched
    primary.broken = False
    await anyio.sleep(0.25)
    await limiter.wait_turn("a.example", 0.01)
    assert not limiter.degraded
    assert primary.calls == calls + 1


async def test_resilient_limiter_does_not_fall_back_for_the_blocks_own_errors() -> None:
    primary = BreakableLimiter()
    limiter = ResilientHostLimiter(primary, InMemoryHostLimiter())
    with pytest.raises(DependencyError, match="the store"):
        async with limiter.slot("a.example", 1, 1.0):
            raise DependencyError("the store is down")
    assert not limiter.degraded
    assert primary.calls == 1


async def test_resilient_limiter_keeps_holds_through_an_outage() -> None:
    primary = BreakableLimiter()
    limiter = ResilientHostLimiter(primary, InMemoryHostLimiter())
    await limiter.hold_off("a.example", 0.6)
    primary.broken = True
    t0 = anyio.current_time()
    await limiter.wait_turn("a.example", 0.01)
    assert anyio.current_time() - t0 >= 0.5
    assert limiter.degraded
