"""The JobEvents contract: in-process and Redis pub/sub events behave the same, and a dead
Redis neither raises nor hangs."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from skr.adapters.memory.job_events import MemoryJobEvents
from skr.adapters.redis.job_events import RedisJobEvents
from skr.ports.job_events import JobEvents
from tests.contract.test_cache import REDIS_URL
from tests.e2e.tcp_proxy import TcpProxy
from tests.integration.redis.test_resilient_cache import closed_loopback_port

pytestmark = pytest.mark.anyio

WAIT = 2.0  # long enough never to be the reason a test passes or fails on a slow machine


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", "redis"])
async def events(request: pytest.FixtureRequest) -> AsyncIterator[JobEvents]:
    if request.param == "memory":
        yield MemoryJobEvents()
        return
    # Pub/sub channels hold no data, so a fresh namespace is all the isolation needed.
    async with RedisJobEvents(REDIS_URL, namespace=f"skr-test:{uuid.uuid4().hex[:12]}:") as redis:
        yield redis


async def test_a_publish_wakes_a_listener(events: JobEvents) -> None:
    async with events.listen("job-1") as listener:
        await events.publish("job-1")
        started = time.monotonic()
        assert await listener.wait(WAIT) is True
        assert time.monotonic() - started < WAIT / 2


async def test_a_publish_while_the_listener_is_busy_is_not_lost(events: JobEvents) -> None:
    async with events.listen("job-1") as listener:
        await events.publish("job-1")
        await anyio.sleep(0.1)  # the watcher is busy re-reading the job meanwhile
        assert await listener.wait(WAIT) is True


async def test_a_publish_wakes_a_listener_already_waiting(events: JobEvents) -> None:
    woke: list[bool] = []
    async with events.listen("job-1") as listener, anyio.create_task_group() as group:

        async def wait() -> None:
            woke.append(await listener.wait(WAIT))

        group.start_soon(wait)
        await anyio.sleep(0.05)
        await events.publish("job-1")
    assert woke == [True]


async def test_two_listeners_both_wake(events: JobEvents) -> None:
    async with events.listen("job-1") as first, events.listen("job-1") as second:
        await events.publish("job-1")
        assert await first.wait(WAIT) is True
        assert await second.wait(WAIT) is True


async def test_a_listener_for_another_job_does_not_wake(events: JobEvents) -> None:
    async with events.listen("job-1") as mine, events.listen("job-2") as other:
        await events.publish("job-1")
        assert await mine.wait(WAIT) is True
        assert await other.wait(0.3) is False


async def test_listening_without_a_publish_times_out_cleanly(events: JobEvents) -> None:
    async with events.listen("job-1") as listener:
        started = time.monotonic()
        assert await listener.wait(0.3) is False
        assert 0.25 <= time.monotonic() - started < 1.5


async def test_one_wake_per_change_then_quiet(events: JobEvents) -> None:
    async with events.listen("job-1") as listener:
        await events.publish("job-1")
        assert await listener.wait(WAIT) is True
        assert await listener.wait(0.3) is False


async def test_a_publish_with_nobody_listening_is_fine(events: JobEvents) -> None:
    await events.publish("nobody-watches-this")


async def test_memory_events_forget_listeners_that_left() -> None:
    events = MemoryJobEvents()
    async with events.listen("job-1"), events.listen("job-1"), events.listen("job-2"):
        assert events.watched_jobs == 2
    assert events.watched_jobs == 0
    with anyio.move_on_after(0.05):
        async with events.listen("job-3") as listener:
            await listener.wait(10)  # cancelled while waiting
    assert events.watched_jobs == 0


async def test_redis_events_on_a_closed_port_never_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://127.0.0.1:{closed_loopback_port()}/0"
    caplog.set_level(logging.WARNING, logger="skr.adapters.redis.job_events")
    async with RedisJobEvents(url, retry_after_seconds=0.0) as events:
        started = time.monotonic()
        await events.publish("job-1")
        await events.publish("job-1")
        async with events.listen("job-1") as listener:
            assert await listener.wait(0.3) is False
        assert time.monotonic() - started < 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


async def test_redis_listeners_over_the_limit_fall_back_to_their_timeout() -> None:
    namespace = f"skr-test:{uuid.uuid4().hex[:12]}:"
    async with RedisJobEvents(REDIS_URL, namespace=namespace, max_listeners=1) as events:
        async with events.listen("job-1") as subscribed, events.listen("job-1") as extra:
            await events.publish("job-1")
            assert await subscribed.wait(WAIT) is True
            assert await extra.wait(0.2) is False
        async with events.listen("job-1") as again:  # the slot was given back
            await events.publish("job-1")
            assert await again.wait(WAIT) is True


async def test_a_redis_listener_cut_off_by_an_outage_is_woken_again_once_redis_is_back() -> None:
    """A worker's loop listens for the whole life of the process: an outage must not
    leave it deaf (polling) for the rest of it."""
    namespace = f"skr-test:{uuid.uuid4().hex[:12]}:"
    port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    with TcpProxy(port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        async with (
            RedisJobEvents(url, namespace=namespace, retry_after_seconds=0.0) as events,
            RedisJobEvents(REDIS_URL, namespace=namespace) as publisher,
            events.listen("job-1") as listener,
        ):
            await publisher.publish("job-1")
            assert await listener.wait(WAIT) is True
            proxy.cut()  # the outage: the subscription's connection is closed
            assert await listener.wait(0.3) is False
            proxy.restore()
            assert await listener.wait(0.3) is False  # subscribed again, nothing sent yet
            await publisher.publish("job-1")
            assert await listener.wait(WAIT) is True
