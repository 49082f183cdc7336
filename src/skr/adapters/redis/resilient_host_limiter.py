"""A HostLimiter that outlives its primary: in-process politeness while Redis is down."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from skr.domain.errors import DependencyError
from skr.ports.host_limiter import HostLimiter

logger = logging.getLogger(__name__)


class ResilientHostLimiter:
    """Implements the HostLimiter port over a primary that may fail (Redis), never raising
    for it, so an outage of the shared limiter never stops crawling.

    A call whose primary raises ``DependencyError`` is served by ``fallback`` (an
    ``InMemoryHostLimiter``), and the limiter turns degraded: for ``retry_after_seconds``
    it does not touch the primary at all, then the next call is a single probe (others
    keep using the fallback while it runs). It logs a warning when it turns degraded, at
    most one more every ``warn_every_seconds`` while probes keep failing, and an info line
    on recovery.

    While degraded, politeness is per process, not per fleet: each process spaces its
    own requests and counts its own slots, so a host may see up to one process's worth
    per worker process. Holds are written to the fallback as well as the primary, so a
    ``Retry-After`` received before an outage is still honoured during it. Exceptions
    raised inside a ``slot`` block are the caller's and pass through untouched; only a
    failure to *take* the primary slot falls back.
    """

    def __init__(
        self,
        primary: HostLimiter,
        fallback: HostLimiter,
        *,
        retry_after_seconds: float = 5.0,
        warn_every_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._retry_after = retry_after_seconds
        self._warn_every = warn_every_seconds
        self._clock = clock
        self._degraded = False
        self._retry_at = 0.0
        self._probing = False
        self._warned_at = 0.0

    @property
    def degraded(self) -> bool:
        """True while the primary is being skipped; for readiness and metrics."""
        return self._degraded

    async def wait_turn(self, host: str, interval_seconds: float) -> None:
        if await self._on_primary(lambda: self._primary.wait_turn(host, interval_seconds)):
            return
        await self._fallback.wait_turn(host, interval_seconds)

    async def hold_off(self, host: str, seconds: float) -> None:
        await self._fallback.hold_off(host, seconds)
        await self._on_primary(lambda: self._primary.hold_off(host, seconds))

    def slot(
        self, host: str, limit: int, lease_seconds: float, wait_seconds: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        return self._slot(host, limit, lease_seconds, wait_seconds)

    @asynccontextmanager
    async def _slot(
        self, host: str, limit: int, lease_seconds: float, wait_seconds: float | None
    ) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            taken = await self._on_primary(
                lambda: stack.enter_async_context(
                    self._primary.slot(host, limit, lease_seconds, wait_seconds)
                )
            )
            if not taken:
                await stack.enter_async_context(
                    self._fallback.slot(host, limit, lease_seconds, wait_seconds)
                )
            yield

    async def _on_primary(self, call: Callable[[], Awaitable[object]]) -> bool:
        """Run ``call`` on the primary if it is in use; False if the caller must fall back."""
        probe = False
        if self._degraded:
            if self._probing or self._clock() < self._retry_at:
                return False
            probe = self._probing = True
        try:
            await call()
        except DependencyError as exc:
            self._record_failure(exc)
            return False
        finally:
            if probe:
                self._probing = False
        if probe and self._degraded:
            self._degraded = False
            logger.info("host limiter primary is back; politeness is shared again")
        return True

    def _record_failure(self, exc: DependencyError) -> None:
        now = self._clock()
        self._retry_at = now + self._retry_after
        if not self._degraded:
            self._degraded = True
            self._warned_at = now
            logger.warning(
                "host limiter primary failed, limiting per process and retrying every %.1f s: %s",
                self._retry_after,
                exc.detail,
            )
        elif now - self._warned_at >= self._warn_every:
            self._warned_at = now
            logger.warning("host limiter primary still failing: %s", exc.detail)
