"""The embedded HostLimiter: per-host request spacing, holds and slots within one process."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

_EVICTION_SCAN = 64


@dataclass
class _HostState:
    next_free: float = 0.0
    hold_until: float = 0.0
    holders: int = 0
    waiters: list[anyio.Event] = field(default_factory=list)

    def idle(self, now: float) -> bool:
        """Nothing about this host still matters: forgetting it changes no behaviour."""
        return (
            self.next_free <= now
            and self.hold_until <= now
            and self.holders == 0
            and not self.waiters
        )


class InMemoryHostLimiter:
    """Implements the HostLimiter port for one process.

    ``wait_turn`` reserves a start time synchronously (no await between reading and
    writing a host's state, so concurrent callers on the event loop line up):
    ``start = max(now, next_free, hold_until)`` and ``next_free = start + interval``,
    then sleeps until ``start``. A caller cancelled while sleeping leaves its turn
    reserved, which only ever spaces requests more, never less. If a ``hold_off`` placed
    after the reservation covers the reserved start, the caller takes a new turn, so a
    request already in line does not start during a 429's ``Retry-After``.

    ``slot`` counts holders per host and wakes waiters when one leaves; a holder in
    this process cannot die without its ``finally`` running, so ``lease_seconds`` is
    not needed here. Per-host state is kept for at most ``max_hosts`` hosts: beyond
    that, the least recently used hosts that are idle (no reservation ahead, no hold,
    no holder or waiter) are forgotten; busy hosts are always kept.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_hosts: int = 4096,
    ) -> None:
        self._clock = clock
        self._max_hosts = max_hosts
        self._hosts: OrderedDict[str, _HostState] = OrderedDict()

    async def wait_turn(self, host: str, interval_seconds: float) -> None:
        interval = max(0.0, interval_seconds)
        while True:
            state = self._state(host)
            now = self._clock()
            start = max(now, state.next_free, state.hold_until)
            state.next_free = start + interval
            if start > now:
                await anyio.sleep(start - now)
            else:
                await anyio.lowlevel.checkpoint()
            # A hold placed after the reservation that covers it means: take a new turn.
            current = self._hosts.get(host)
            if current is None or current.hold_until <= start:
                return

    async def hold_off(self, host: str, seconds: float) -> None:
        if seconds <= 0:
            return
        state = self._state(host)
        state.hold_until = max(state.hold_until, self._clock() + seconds)

    def slot(
        self, host: str, limit: int, lease_seconds: float, wait_seconds: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        return self._slot(host, max(1, limit), wait_seconds)

    @asynccontextmanager
    async def _slot(self, host: str, limit: int, wait_seconds: float | None) -> AsyncIterator[None]:
        with anyio.fail_after(wait_seconds):  # ends before the block runs
            state = await self._wait_for_slot(host, limit)
        state.holders += 1
        try:
            yield
        finally:
            state.holders -= 1
            # Every waiter re-checks the count, so a wake-up lost to a cancelled waiter
            # cannot strand the others; per-host limits are small, so the herd is too.
            waiters, state.waiters = state.waiters, []
            for waiter in waiters:
                waiter.set()

    async def _wait_for_slot(self, host: str, limit: int) -> _HostState:
        while True:
            # Looked up afresh after every wait: no await lies between this and the
            # increment, so the state counted in is the one in the table.
            state = self._state(host)
            if state.holders < limit:
                break
            freed = anyio.Event()
            state.waiters.append(freed)
            try:
                await freed.wait()
            finally:
                if freed in state.waiters:
                    state.waiters.remove(freed)
        return state

    def _state(self, host: str) -> _HostState:
        state = self._hosts.get(host)
        if state is None:
            self._forget_idle_hosts()
            state = self._hosts[host] = _HostState()
        else:
            self._hosts.move_to_end(host)
        return state

    def _forget_idle_hosts(self) -> None:
        now = self._clock()
        # Look at a bounded number of the oldest hosts, so a table full of busy hosts
        # costs little per call; busy ones move to the back and are kept.
        for _ in range(min(len(self._hosts), _EVICTION_SCAN)):
            if len(self._hosts) < self._max_hosts:
                return
            host, state = next(iter(self._hosts.items()))
            if state.idle(now):
                del self._hosts[host]
            else:
                self._hosts.move_to_end(host)
