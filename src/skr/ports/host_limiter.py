"""The HostLimiter port: politeness per web host, shared by every worker that fetches."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol


class HostLimiter(Protocol):
    async def wait_turn(self, host: str, interval_seconds: float) -> None:
        """Return when a request to ``host`` may start: request starts to one host are
        spaced at least ``interval_seconds`` apart across every process sharing this
        limiter, and never before a ``hold_off`` for the host ends. Each call takes one
        turn (reserves its start time), so concurrent callers wait in line."""
        ...

    async def hold_off(self, host: str, seconds: float) -> None:
        """No request to ``host`` starts in the next ``seconds`` (a 429 or 503 with
        ``Retry-After``); a longer hold already in place is kept."""
        ...

    def slot(
        self, host: str, limit: int, lease_seconds: float, wait_seconds: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Hold one of ``limit`` concurrent slots for ``host`` while the block runs,
        waiting for one to free (``TimeoutError`` after ``wait_seconds``, if given). A slot
        whose holder died frees itself after ``lease_seconds``."""
        ...
