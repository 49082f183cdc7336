"""The HostLimiter contract: in-memory, Redis and resilient-with-Redis-down limiters agree.

Timing is real (``anyio.current_time()``). Lower bounds are what the limiter
guarantees, so a slow machine only makes them easier to meet; upper bounds are loose.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from skr.adapters.memory.host_limiter import InMemoryHostLimiter
from skr.adapters.redis.host_limiter import RedisHostLimiter
from skr.adapters.redis.resilient_host_limiter import ResilientHostLimiter
from skr.ports.host_limiter import HostLimiter
from tests.fixtures.concurrency import EPS, max_concurrency, start_times
from tests.fixtures.kinds import class_id
from tests.fixtures.redis import dead_redis_client, fresh_prefix, redis_client

pytestmark = pytest.mark.anyio

# The resilient limiter runs with its Redis down: its fallback must keep the promises too.
LIMITER_KINDS = [InMemoryHostLimiter, RedisHostLimiter, ResilientHostLimiter]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def make_limiter(kind: type) -> AsyncIterator[HostLimiter]:
    if kind is InMemoryHostLimiter:
        yield InMemoryHostLimiter()
        return
    async with fresh_prefix() as prefix:
        if kind is RedisHostLimiter:
            async with redis_client() as client:
                yield RedisHostLimiter(client, prefix)
        else:
            async with dead_redis_client() as client:
                yield ResilientHostLimiter(RedisHostLimiter(client, prefix), InMemoryHostLimiter())


@pytest.fixture(params=LIMITER_KINDS, ids=class_id)
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[HostLimiter]:
    async with make_limiter(request.param) as built:
        yield built
        if isinstance(built, ResilientHostLimiter):
            assert built.degraded, "the resilient limiter never tried its (dead) primary"


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
