"""The HostLimiter contract: in-memory, Redis and resilient-with-Redis-down limiters agree.

Timing is real (``anyio.current_time()``). Lower bounds are what the limiter
guarantees, so a slow machine only makes them easier to meet; upper bounds are loose.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from skr.adapters.memory.host_limiter import InMemoryHostLimiter
from skr.adapters.redis.host_limiter import RedisHostLimiter
from skr.adapters.redis.resilient_host_limiter import ResilientHostLimiter
from skr.domain.errors import DependencyError
from skr.ports.host_limiter import HostLimiter

pytestmark = pytest.mark.anyio

REDIS_URL = os.environ.get("SKR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Nothing listens on loopback port 1 (it would need root), so connecting is refused at once.
CLOSED_PORT = 1
LIMITER_KINDS = ["memory", "redis", "resilient-with-redis-down"]
# Float and millisecond rounding between clocks; never machine noise, which only adds.
EPS = 0.02


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def redis_client() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    try:
        yield client
    finally:
        await client.aclose()


@asynccontextmanager
async def dead_redis_client() -> AsyncIterator[Redis]:
    client = Redis(
        host="127.0.0.1",
        port=CLOSED_PORT,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        yield client
    finally:
        await client.aclose()


@asynccontextmanager
async def fresh_prefix() -> AsyncIterator[str]:
    """A key prefix of this test alone, whose keys are deleted afterwards."""
    prefix = f"skr-test:host:{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        async with redis_client() as cleaner:
            keys = [key async for key in cleaner.scan_iter(match=f"{prefix}*")]
            if keys:
                await cleaner.delete(*keys)


@asynccontextmanager
async def make_limiter(kind: str) -> AsyncIterator[HostLimiter]:
    if kind == "memory":
        yield InMemoryHostLimiter()
        return
    async with fresh_prefix() as prefix:
        if kind == "redis":
            async with redis_client() as client:
                yield RedisHostLimiter(client, prefix)
        else:
            async with dead_redis_client() as client:
                yield ResilientHostLimiter(RedisHostLimiter(client, prefix), InMemoryHostLimiter())


@pytest.fixture(params=LIMITER_KINDS)
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[HostLimiter]:
    async with make_limiter(request.param) as built:
        yield built
        if isinstance(built, ResilientHostLimiter):
            assert built.degraded, "the resilient limiter never tried its (dead) primary"


async def start_times(
    calls: list[Callable[[], Awaitable[None]]],
) -> list[float]:
    """Run ``calls`` concurrently; the sorted times at which each returned."""
    times: list[float] = []

    async def run(call: Callable[[], Awaitable[None]]) -> None:
        await call()
        times.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        for call in calls:
            tg.start_soon(run, call)
    return sorted(times)


async def max_concurrency(
    slots: list[Callable[[], AbstractAsyncContextManager[None]]], hold_seconds: float
) -> int:
    """Enter every slot from its own task, hold it a while; the most held at once."""
    current = peak = 0

    async def hold(slot: Callable[[], AbstractAsyncContextManager[None]]) -> None:
        nonlocal current, peak
        async with slot():
            current += 1
            peak = max(peak, current)
            await anyio.sleep(hold_seconds)
            current -= 1

    async with anyio.create_task_group() as tg:
        for slot in slots:
            tg.start_soon(hold, slot)
    return peak


# --- wait_turn ---------------------------------------------------------------------


async def test_first_turn_is_immediate(limiter: HostLimiter) -> None:
    t0 = anyio.current_time()
    await limiter.wait_turn("a.example", 5.0)
    assert anyio.current_time() - t0 < 1.0


async def test_sequential_turns_are_spaced(limiter: HostLimiter) -> None:
    t0 = anyio.current_time()
    for _ in range(4):
        await limiter.wait_turn("a.example", 0.2)
    elapsed = anyio.current_time() - t0
    assert 0.6 - EPS <= elapsed < 3.0


async def test_hosts_do_not_wait_for_each_other(limiter: HostLimiter) -> None:
    t0 = anyio.current_time()
    for host in ("a.example", "b.example", "c.example", "d.example"):
        await limiter.wait_turn(host, 5.0)
    assert anyio.current_time() - t0 < 1.0


async def test_concurrent_callers_wait_in_line(limiter: HostLimiter) -> None:
    t0 = anyio.current_time()
    times = await start_times([lambda: limiter.wait_turn("a.example", 0.2)] * 5)
    for position, started in enumerate(times):
        assert started - t0 >= position * 0.2 - EPS, (position, [t - t0 for t in times])
    assert times[-1] - t0 < 4.0


async def test_hold_off_delays_the_next_turn_and_a_shorter_hold_keeps_it(
    limiter: HostLimiter,
) -> None:
    await limiter.hold_off("a.example", 1.0)
    await limiter.hold_off("a.example", 0.1)
    t0 = anyio.current_time()
    await limiter.wait_turn("a.example", 0.01)
    assert 0.9 <= anyio.current_time() - t0 < 3.0


async def test_hold_off_is_per_host(limiter: HostLimiter) -> None:
    await limiter.hold_off("a.example", 5.0)
    t0 = anyio.current_time()
    await limiter.wait_turn("b.example", 0.01)
    assert anyio.current_time() - t0 < 1.0


async def test_hold_off_reaches_a_caller_already_in_line(limiter: HostLimiter) -> None:
    await limiter.wait_turn("a.example", 0.4)
    t0 = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.wait_turn, "a.example", 0.4)  # reserved at about t0 + 0.4
        await anyio.sleep(0.1)
        await limiter.hold_off("a.example", 0.8)  # until about t0 + 0.9
    assert anyio.current_time() - t0 >= 0.8


async def test_zero_or_negative_hold_does_nothing(limiter: HostLimiter) -> None:
    await limiter.hold_off("a.example", 0)
    await limiter.hold_off("a.example", -3)
    t0 = anyio.current_time()
    await limiter.wait_turn("a.example", 0.01)
    assert anyio.current_time() - t0 < 1.0


# --- slot --------------------------------------------------------------------------


async def test_slot_never_admits_more_than_the_limit(limiter: HostLimiter) -> None:
    t0 = anyio.current_time()
    peak = await max_concurrency([lambda: limiter.slot("a.example", 2, 30.0)] * 6, 0.15)
    assert peak == 2
    assert anyio.current_time() - t0 >= 3 * 0.15 - EPS


async def test_slots_are_per_host(limiter: HostLimiter) -> None:
    async with limiter.slot("a.example", 1, 30.0):
        with anyio.fail_after(1.0):
            async with limiter.slot("b.example", 1, 30.0):
                pass


async def test_a_cancelled_holder_frees_its_slot(limiter: HostLimiter) -> None:
    entered = anyio.Event()

    async def holder() -> None:
        async with limiter.slot("a.example", 1, 30.0):
            entered.set()
            await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await entered.wait()
        tg.cancel_scope.cancel()
    with anyio.fail_after(2.0):
        async with limiter.slot("a.example", 1, 30.0):
            pass


async def test_a_waiter_that_gives_up_takes_no_slot(limiter: HostLimiter) -> None:
    async with limiter.slot("a.example", 1, 30.0):
        with anyio.move_on_after(0.3) as waited:
            async with limiter.slot("a.example", 1, 30.0):
                pytest.fail("entered a full slot")
        assert waited.cancelled_caught
    with anyio.fail_after(2.0):
        async with limiter.slot("a.example", 1, 30.0):
            pass


async def test_a_bounded_wait_for_a_slot_times_out_and_the_block_can_use_scopes(
    limiter: HostLimiter,
) -> None:
    async with limiter.slot("a.example", 1, 30.0):
        began = anyio.current_time()
        with pytest.raises(TimeoutError):
            async with limiter.slot("a.example", 1, 30.0, wait_seconds=0.2):
                pytest.fail("entered a full slot")
        assert 0.15 <= anyio.current_time() - began < 1.5
    # the wait's deadline is over before the block runs: the block may nest its own
    async with limiter.slot("a.example", 1, 30.0, wait_seconds=0.2):
        with anyio.fail_after(1.0):
            await anyio.sleep(0.3)


async def test_an_error_in_the_block_passes_through_and_frees_the_slot(
    limiter: HostLimiter,
) -> None:
    error = ValueError("the fetch failed")
    with pytest.raises(ValueError, match="the fetch failed") as raised:
        async with limiter.slot("a.example", 1, 30.0):
            raise error
    assert raised.value is error
    with anyio.fail_after(2.0):
        async with limiter.slot("a.example", 1, 30.0):
            pass


# --- Redis: shared across instances, self-healing, errors mapped --------------------


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


# --- Resilient: falls back per call, warns rarely, recovers -------------------------


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


# --- In-memory: bounded state --------------------------------------------------------


async def test_memory_limiter_forgets_idle_hosts_but_keeps_busy_ones() -> None:
    limiter = InMemoryHostLimiter(max_hosts=10)
    await limiter.hold_off("held.example", 30.0)
    for number in range(200):
        await limiter.wait_turn(f"h{number}.example", 0)
    assert len(limiter._hosts) <= 10
    assert "held.example" in limiter._hosts
    with anyio.move_on_after(0.3) as waited:
        await limiter.wait_turn("held.example", 0)
    assert waited.cancelled_caught
