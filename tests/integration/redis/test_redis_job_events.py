"""RedisJobEvents: a dead or cut-off Redis neither raises nor hangs, and listeners are bounded."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from skr.adapters.redis.job_events import RedisJobEvents
from tests.e2e.tcp_proxy import TcpProxy
from tests.fixtures.redis import REDIS_URL, closed_loopback_port

pytestmark = pytest.mark.anyio

WAIT = 2.0  # long enough never to be the reason a test passes or fails on a slow machine


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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
