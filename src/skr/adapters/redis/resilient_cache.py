"""A Cache that outlives its primary: misses while the primary is down, one probe to recover."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from skr.domain.errors import DependencyError
from skr.ports.cache import Cache

logger = logging.getLogger(__name__)

# The generation counter of this reserved id is the global epoch. Collection ids are
# uuid hex, so "~" can never start one.
EPOCH_ID = "~epoch"
# generation = epoch * 2**40 + collection counter: injective while a collection has been
# bumped fewer than 2**40 times, and strictly increasing in both parts.
_EPOCH_SHIFT = 40


class PingableCache(Cache, Protocol):
    async def ping(self) -> None: ...


class ResilientCache:
    """Implements the Cache port over a primary that may fail (Redis), never raising for it.

    On a ``DependencyError`` the cache turns degraded: it logs once, then for
    ``retry_after_seconds`` it does not touch the primary at all. While degraded ``get``
    misses, ``set`` and ``bump_generation`` do nothing, and ``generation`` returns a
    one-time negative number that equals no real generation, so nothing stored under it
    can ever be read back as fresh. After the window the next call is a single probe.

    Stale entries after an outage: a ``bump_generation`` lost during the outage would
    leave the collection's counter where it was, making entries cached before the
    outage look fresh. So every generation includes a global epoch (the counter of
    ``EPOCH_ID``), and recovery *is* an epoch bump: the probe is ``INCR`` of the epoch,
    and only once it succeeded is the primary used again. Every instance reads the epoch
    with each generation, so all of them stop using pre-outage entries at once. The
    cost is one extra read per ``generation`` and a cold cache after each outage.
    """

    def __init__(
        self,
        primary: PingableCache,
        *,
        retry_after_seconds: float = 5.0,
        on_state_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._primary = primary
        self._retry_after = retry_after_seconds
        self._on_state_change = on_state_change
        self._degraded = False
        self._retry_at = 0.0
        self._probing = False
        self._failures = 0

    @property
    def degraded(self) -> bool:
        """True while the primary is being skipped; for readiness and metrics."""
        return self._degraded

    async def ping(self) -> None:
        """Ping the primary directly; raises ``DependencyError`` if it is down."""
        await self._primary.ping()

    async def get(self, key: str) -> bytes | None:
        if not await self._primary_usable():
            return None
        try:
            return await self._primary.get(key)
        except DependencyError as exc:
            self._record_failure(exc)
            return None

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        if not await self._primary_usable():
            return
        try:
            await self._primary.set(key, value, ttl_seconds)
        except DependencyError as exc:
            self._record_failure(exc)

    async def generation(self, collection_id: str) -> int:
        if not await self._primary_usable():
            return _one_time_generation()
        try:
            epoch = await self._primary.generation(EPOCH_ID)
            counter = await self._primary.generation(collection_id)
        except DependencyError as exc:
            self._record_failure(exc)
            return _one_time_generation()
        return (epoch << _EPOCH_SHIFT) + counter

    async def bump_generation(self, collection_id: str) -> None:
        # A bump lost here is made good by the epoch bump on recovery.
        if not await self._primary_usable():
            return
        try:
            await self._primary.bump_generation(collection_id)
        except DependencyError as exc:
            self._record_failure(exc)

    async def _primary_usable(self) -> bool:
        if not self._degraded:
            return True
        if self._probing or time.monotonic() < self._retry_at:
            return False
        return await self._probe()

    async def _probe(self) -> bool:
        """Bump the epoch on the primary; on success the cache is healthy again."""
        self._probing = True
        failures_before = self._failures
        try:
            await self._primary.bump_generation(EPOCH_ID)
        except DependencyError as exc:
            self._record_failure(exc)
            return False
        finally:
            self._probing = False
        if self._failures != failures_before:
            # A call begun before the outage failed meanwhile; its lost bump may have
            # landed after our epoch bump, so wait for another window and bump again.
            return False
        self._degraded = False
        logger.info("cache primary is back; epoch bumped, entries from before are unused")
        if self._on_state_change is not None:
            self._on_state_change(False)
        return True

    def _record_failure(self, exc: DependencyError) -> None:
        self._failures += 1
        self._retry_at = time.monotonic() + self._retry_after
        if self._degraded:
            return
        self._degraded = True
        logger.warning(
            "cache primary failed, serving misses and retrying every %.1f s: %s",
            self._retry_after,
            exc.detail,
        )
        if self._on_state_change is not None:
            self._on_state_change(True)


def _one_time_generation() -> int:
    """A negative number no real generation (always >= 0) or other caller will use."""
    return -1 - secrets.randbits(62)
