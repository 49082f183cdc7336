"""RedisHostLimiter: shared across instances and processes, self-healing, errors mapped."""

from __future__ import annotations

import anyio
import pytest

from skr.adapters.redis.host_limiter import RedisHostLimiter
from skr.domain.errors import DependencyError
from tests.fixtures.concurrency import EPS, max_concurrency, start_times
from tests.fixtures.redis import dead_redis_client, fresh_prefix, redis_client

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_two_redis_limiters_share_the_spacing() -> None:
    async with fresh_prefix() as prefix, redis_client() as one, redis_client() as two:
        first, second = RedisHostLimiter(one, prefix), RedisHostLimiter(two, prefix)
        t0 = anyio.current_time()
        for limiter in (first, second, first, second):
            await limiter.wait_turn("a.example", 0.2)
        assert anyio.current_time() - t0 >= 0.6 - EPS
        t0 = anyio.current_time()
        times = await start_times(
            [lambda: first.wait_turn("b.example", 0.2)] * 3
            + [lambda: second.wait_turn("b.example", 0.2)] * 3
        )
        for position, started in enumerate(times):
            assert started - t0 >= position * 0.2 - EPS


async def test_two_redis_limiters_share_holds_and_slots() -> None:
    async with fresh_prefix() as prefix, redis_client() as one, redis_client() as two:
        first, second = RedisHostLimiter(one, prefix), RedisHostLimiter(two, prefix)
        await first.hold_off("a.example", 0.6)
        t0 = anyio.current_time()
        await second.wait_turn("a.example", 0.01)
        assert anyio.current_time() - t0 >= 0.5
        peak = await max_concurrency(
            [lambda: first.slot("a.example", 2, 30.0)] * 3
            + [lambda: second.slot("a.example", 2, 30.0)] * 3,
            0.15,
        )
        assert peak == 2


async def test_a_dead_holders_redis_slot_frees_after_its_lease() -> None:
    async with fresh_prefix() as prefix, redis_client() as client:
        limiter = RedisHostLimiter(client, prefix)
        # A holder whose process died: the token went in and nobody will remove it.
        await limiter._acquire(limiter._key("a.example", "slots"), "dead-token", 1, 0.5)
        t0 = anyio.current_time()
        with anyio.fail_after(3.0):
            async with limiter.slot("a.example", 1, 30.0):
                waited = anyio.current_time() - t0
        assert waited >= 0.3


async def test_a_live_redis_holder_keeps_its_slot_past_the_lease() -> None:
    async with fresh_prefix() as prefix, redis_client() as client:
        limiter = RedisHostLimiter(client, prefix)
        async with limiter.slot("a.example", 1, 0.3):
            with anyio.move_on_after(1.0) as waited:
                async with limiter.slot("a.example", 1, 0.3):
                    pytest.fail("the lease of a live holder lapsed")
            assert waited.cancelled_caught
        with anyio.fail_after(2.0):
            async with limiter.slot("a.example", 1, 0.3):
                pass


async def test_redis_keys_expire_on_their_own() -> None:
    async with fresh_prefix() as prefix, redis_client() as client:
        limiter = RedisHostLimiter(client, prefix)
        await limiter.wait_turn("a.example", 0.5)
        await limiter.hold_off("a.example", 0.5)
        async with limiter.slot("b.example", 2, 0.5):
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            assert len(keys) == 3
            for key in keys:
                assert 0 < await client.pttl(key) <= 2000, key
        await anyio.sleep(1.6)
        assert [key async for key in client.scan_iter(match=f"{prefix}*")] == []


async def test_redis_failures_are_dependency_errors() -> None:
    async with dead_redis_client() as client:
        limiter = RedisHostLimiter(client, "skr-test:host:unreachable:")
        with pytest.raises(DependencyError):
            await limiter.wait_turn("a.example", 0.1)
        with pytest.raises(DependencyError):
            await limiter.hold_off("a.example", 1.0)
        with pytest.raises(DependencyError):
            async with limiter.slot("a.example", 1, 1.0):
                pytest.fail("entered a slot without Redis")
