"""The shared HostLimiter on Redis: spacing, holds and slots per host across every process."""

from __future__ import annotations

import logging
import math
import random
import secrets
from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from skr.domain.errors import DependencyError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Keys outlive the instant they stop mattering by this much, then Redis drops them.
_KEY_SLACK_MS = 1000
# A waiter for a slot asks again after a random pause in this range (seconds).
_SLOT_POLL_SECONDS = (0.05, 0.1)
# Releasing a slot on the way out never waits longer than this, even when cancelled.
_RELEASE_TIMEOUT_SECONDS = 2.0
_MIN_REFRESH_SECONDS = 0.05

# Every script reads the clock from Redis TIME, so all processes share one clock.
# Numbers are written with %d: Lua 5.1 would print large ones in exponent notation.
_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1] next-free time (ms), KEYS[2] hold-until time (ms); ARGV[1] interval (ms).
# Reserves the caller's start and returns {wait ms, start ms}.
_WAIT_TURN = (
    _NOW_MS
    + """
local next_free = tonumber(redis.call('GET', KEYS[1]) or 0)
local hold_until = tonumber(redis.call('GET', KEYS[2]) or 0)
local start = math.max(now, next_free, hold_until)
local after = start + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', after),
           'PX', string.format('%d', after - now + tonumber(ARGV[2])))
return {start - now, start}
"""
)

# KEYS[1] hold-until time (ms); ARGV[1] hold (ms). Keeps the later of the two holds.
_HOLD_OFF = (
    _NOW_MS
    + """
local hold_end = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or 0)
if hold_end > current then
  redis.call('SET', KEYS[1], string.format('%d', hold_end),
             'PX', string.format('%d', tonumber(ARGV[1]) + tonumber(ARGV[2])))
end
return 0
"""
)

# The slot set's expiry follows its latest lease, so an abandoned set disappears.
_EXPIRE_WITH_LAST_LEASE = """
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], string.format('%d', tonumber(last[2]) - now + tonumber(ARGV[4])))
"""

# KEYS[1] slot set (member = token, score = lease expiry in ms);
# ARGV[1] limit, ARGV[2] lease (ms), ARGV[3] token. Returns 1 if the slot was taken.
_ACQUIRE_SLOT = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[3])
"""
    + _EXPIRE_WITH_LAST_LEASE
    + """
return 1
"""
)

# Same keys and arguments as acquiring (the limit unused). Extends a held token's
# lease; returns 0 if the token is gone, i.e. its lease lapsed and someone purged it.
_REFRESH_SLOT = (
    _NOW_MS
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[3])
"""
    + _EXPIRE_WITH_LAST_LEASE
    + """
return 1
"""
)


class RedisHostLimiter:
    """Implements the HostLimiter port on Redis, shared by every process using ``prefix``.

    Keys per host are ``<prefix>{<host>}:next`` (the next free start, ms of Redis TIME),
    ``<prefix>{<host>}:hold`` (the end of a hold) and ``<prefix>{<host>}:slots`` (a
    sorted set of slot tokens scored by lease expiry). The braces put one host's keys in
    one Redis Cluster slot, so its scripts may touch them together. Every key carries a
    PEXPIRE just past the moment it stops mattering, so idle hosts cost nothing.

    ``wait_turn`` is one script: it reserves ``start = max(now, next free, hold until)``,
    stores ``next free = start + interval`` and returns the wait; the caller sleeps it.
    After sleeping, one GET of the hold: if a ``hold_off`` placed meanwhile covers the
    reserved start, the caller takes a new turn. ``hold_off`` is one script keeping the
    later hold.

    ``slot`` is a counting semaphore: a script purges expired tokens and adds ours if
    fewer than ``limit`` remain; otherwise the caller polls every 50–100 ms (jittered).
    While the block runs, a background task extends the token's lease every third of
    ``lease_seconds``, so a long download keeps its slot, and only a holder that died
    (its process gone) frees the slot by lease expiry. The token is removed in a
    ``finally`` shielded from cancellation (bounded by a short timeout); if Redis fails
    then, the failure is logged and the lease frees the slot instead.

    The client is the caller's to close. Every Redis or socket error surfaces as
    ``DependencyError``.
    """

    def __init__(self, client: Redis, prefix: str = "skr:host:") -> None:
        self._client = client
        self._prefix = prefix
        # register_script does no I/O: it hashes the text, EVALSHA happens on call.
        self._wait_turn = client.register_script(_WAIT_TURN)
        self._hold_off = client.register_script(_HOLD_OFF)
        self._acquire_slot = client.register_script(_ACQUIRE_SLOT)
        self._refresh_slot = client.register_script(_REFRESH_SLOT)

    async def wait_turn(self, host: str, interval_seconds: float) -> None:
        keys = [self._key(host, "next"), self._key(host, "hold")]
        while True:
            reply = await self._call(
                self._wait_turn(keys=keys, args=[_ms(interval_seconds), _KEY_SLACK_MS])
            )
            wait_ms, start_ms = int(reply[0]), int(reply[1])
            if wait_ms <= 0:
                return
            await anyio.sleep(wait_ms / 1000)
            hold = await self._call(self._client.get(keys[1]))
            if hold is None or int(hold) <= start_ms:
                return

    async def hold_off(self, host: str, seconds: float) -> None:
        if seconds <= 0:
            return
        await self._call(
            self._hold_off(keys=[self._key(host, "hold")], args=[_ms(seconds), _KEY_SLACK_MS])
        )

    def slot(
        self, host: str, limit: int, lease_seconds: float, wait_seconds: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        return self._slot(host, max(1, limit), lease_seconds, wait_seconds)

    @asynccontextmanager
    async def _slot(
        self, host: str, limit: int, lease_seconds: float, wait_seconds: float | None
    ) -> AsyncIterator[None]:
        key = self._key(host, "slots")
        token = secrets.token_hex(12)
        try:
            with anyio.fail_after(wait_seconds):  # ends before the block runs
                await self._acquire(key, token, limit, lease_seconds)
        except DependencyError:
            raise
        except BaseException:
            # Cancelled mid-call: the script may have run, so take the token back.
            await self._release(key, token)
            raise
        body_error: Exception | None = None
        try:
            async with anyio.create_task_group() as refreshing:
                refreshing.start_soon(self._keep_lease, key, token, lease_seconds, host)
                try:
                    yield
                except Exception as exc:  # noqa: BLE001 - re-raised below, unwrapped
                    # Kept out of the task group, which would wrap it in an ExceptionGroup;
                    # cancellation passes through unwrapped and untouched.
                    body_error = exc
                finally:
                    refreshing.cancel_scope.cancel()
            if body_error is not None:
                raise body_error
        finally:
            await self._release(key, token)

    async def _acquire(self, key: str, token: str, limit: int, lease_seconds: float) -> None:
        """Take a slot for ``token``, polling until one is free."""
        args: list[int | str] = [limit, max(1, _ms(lease_seconds)), token, _KEY_SLACK_MS]
        while True:
            if int(await self._call(self._acquire_slot(keys=[key], args=args))):
                return
            await anyio.sleep(random.uniform(*_SLOT_POLL_SECONDS))

    async def _keep_lease(self, key: str, token: str, lease_seconds: float, host: str) -> None:
        args: list[int | str] = [0, max(1, _ms(lease_seconds)), token, _KEY_SLACK_MS]
        while True:
            await anyio.sleep(max(_MIN_REFRESH_SECONDS, lease_seconds / 3))
            try:
                held = int(await self._call(self._refresh_slot(keys=[key], args=args)))
            except DependencyError as exc:
                # The block must not fail for this; the lease may lapse, letting one
                # more holder in, which is the documented price of a Redis failure.
                logger.warning("could not extend a slot lease for %s: %s", host, exc.detail)
                continue
            if not held:
                logger.warning("a slot lease for %s lapsed; the host may see one more", host)
                return

    async def _release(self, key: str, token: str) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_RELEASE_TIMEOUT_SECONDS):
            try:
                await self._call(self._client.zrem(key, token))
            except DependencyError as exc:
                # Raising here would hide the block's own outcome; the lease frees it.
                logger.warning("could not release a host slot, its lease will: %s", exc.detail)

    def _key(self, host: str, kind: str) -> str:
        return f"{self._prefix}{{{host}}}:{kind}"

    async def _call(self, command: Awaitable[T]) -> T:
        try:
            return await command
        except (RedisError, OSError) as exc:
            raise DependencyError(
                f"Redis host limiter failed: {type(exc).__name__}: {exc}"
            ) from exc


def _ms(seconds: float) -> int:
    """Whole milliseconds, rounded up so a spacing or a hold is never shortened."""
    return max(0, math.ceil(seconds * 1000))
