"""The JobEvents contract: in-process and Redis pub/sub events behave the same."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from skr.adapters.memory.job_events import MemoryJobEvents
from skr.adapters.redis.job_events import RedisJobEvents
from skr.ports.job_events import JobEvents
from tests.fixtures.kinds import class_id
from tests.fixtures.redis import REDIS_URL

pytestmark = pytest.mark.anyio

WAIT = 2.0  # long enough never to be the reason a test passes or fails on a slow machine


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=[MemoryJobEvents, RedisJobEvents], ids=class_id)
async def events(request: pytest.FixtureRequest) -> AsyncIterator[JobEvents]:
    if request.param is MemoryJobEvents:
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
