"""The shared JobEvents on Redis pub/sub: a worker's progress wakes watchers in any process."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from skr.adapters.redis.client import RedisClientOwner, redis_client
from skr.ports.job_events import JobListener

logger = logging.getLogger(__name__)

# What a Redis call can raise when the server is gone or slow; anything else is a bug.
_FAILURES = (RedisError, OSError, TimeoutError)


class _Listener:
    """A listener on its own subscribed connection while Redis serves it. Without one (Redis
    failing, or the process at its listener limit) it only times out, and it subscribes
    again at its next wait once Redis is tried again, so one that listens for its whole
    life (a worker's loop) is woken again after an outage."""

    def __init__(self, job_id: str, events: RedisJobEvents) -> None:
        self._job_id = job_id
        self._events = events
        self._pubsub: PubSub | None = None

    async def subscribe(self) -> None:
        if self._pubsub is None:
            self._pubsub = await self._events.subscribe(self._job_id)

    async def wait(self, timeout_seconds: float) -> bool:
        deadline = time.monotonic() + timeout_seconds
        await self.subscribe()
        while self._pubsub is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=left
                )
            except _FAILURES as exc:
                self._events.record_failure("listening", exc)
                await self.aclose()
                break
            if message is not None and message.get("type") == "message":
                return True
        await anyio.sleep(max(deadline - time.monotonic(), 0.0))
        return False

    async def aclose(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await self._events.unsubscribe(pubsub)


class RedisJobEvents(RedisClientOwner):
    """Implements the JobEvents port with Redis pub/sub on ``<namespace>job:<job id>``.

    Redis is an optimisation here, never a dependency: a failed ``publish`` is logged once
    per outage and swallowed, and for ``retry_after_seconds`` afterwards nothing is sent to
    Redis at all (a dead server costs a job nothing); a listener whose subscription fails
    only times out (its watcher falls back to re-reading the job) until a later wait
    subscribes again.

    Each listener holds one subscribed connection, confirmed before ``listen`` yields, so
    a change published after entering is never missed. At most ``max_listeners`` are
    subscribed at once per process; further listeners time out (and their watchers poll),
    which bounds the connections open streams can take.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "skr:",
        socket_timeout_seconds: float = 0.5,
        connect_timeout_seconds: float = 0.5,
        retry_after_seconds: float = 5.0,
        max_listeners: int = 256,
    ) -> None:
        self._url = url
        self._namespace = namespace
        self._socket_timeout = socket_timeout_seconds
        self._connect_timeout = connect_timeout_seconds
        self._retry_after = retry_after_seconds
        self._max_listeners = max_listeners
        self._client: Redis | None = None
        self._listeners = 0
        self._skip_until = 0.0
        self._failing = False

    def _new_client(self) -> Redis:
        return redis_client(
            self._url,
            socket_timeout_seconds=self._socket_timeout,
            connect_timeout_seconds=self._connect_timeout,
        )

    async def publish(self, job_id: str) -> None:
        if self._client is None or self._skipping():
            return
        try:
            await self._client.publish(self._channel(job_id), b"changed")
        except _FAILURES as exc:
            self.record_failure("publishing", exc)
            return
        self._recovered()

    @asynccontextmanager
    async def listen(self, job_id: str) -> AsyncIterator[JobListener]:
        listener = _Listener(job_id, self)
        await listener.subscribe()  # confirmed before yielding: no later publish is missed
        try:
            yield listener
        finally:
            await listener.aclose()

    def record_failure(self, doing: str, exc: BaseException) -> None:
        """Record a failed Redis call: skip Redis for a while, and log once per outage."""
        self._skip_until = time.monotonic() + self._retry_after
        if not self._failing:
            self._failing = True
            logger.warning(
                "job events: Redis failed while %s (%s: %s); watchers re-read jobs on a "
                "timer until it is back",
                doing,
                type(exc).__name__,
                exc,
            )

    async def subscribe(self, job_id: str) -> PubSub | None:
        """A connection subscribed to the job's channel, or None when Redis is failing,
        the listener limit is reached or the subscription is not confirmed in time."""
        if self._client is None or self._skipping() or self._listeners >= self._max_listeners:
            return None
        pubsub = self._client.pubsub()
        subscribed = False
        try:
            await pubsub.subscribe(self._channel(job_id))
            reply = await pubsub.get_message(timeout=self._socket_timeout)
            subscribed = reply is not None and reply.get("type") == "subscribe"
            if not subscribed:
                self.record_failure("subscribing", TimeoutError("no confirmation of SUBSCRIBE"))
        except _FAILURES as exc:
            self.record_failure("subscribing", exc)
        finally:
            if not subscribed:
                await _close(pubsub)
        if not subscribed:
            return None
        self._recovered()
        self._listeners += 1
        return pubsub

    async def unsubscribe(self, pubsub: PubSub) -> None:
        """Close a subscription from :meth:`subscribe` and give its listener slot back."""
        self._listeners -= 1
        await _close(pubsub)

    def _skipping(self) -> bool:
        return self._failing and time.monotonic() < self._skip_until

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            logger.info("job events: Redis is back")

    def _channel(self, job_id: str) -> str:
        return f"{self._namespace}job:{job_id}"


async def _close(pubsub: PubSub) -> None:
    """Close a subscription even when the task is being cancelled; bounded, never raising."""
    with anyio.move_on_after(1.0, shield=True):
        try:
            await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
        except _FAILURES as exc:
            logger.debug("closing a job events subscription failed: %s", exc)
