"""Admission control: each class of endpoint runs at most so many requests at once, lets
a bounded number wait briefly, and sheds the rest at once with 503 and ``Retry-After``,
so overload costs the extra requests, not every request's latency."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from skr.entrypoints.api.problems import problem
from skr.settings import Settings

# classes of endpoint, each with its own gate: one never starves another
SEARCH, ASK, WRITE, READ, STREAM, PAGE = "search", "ask", "write", "read", "stream", "page"
UNGATED = frozenset({"/livez", "/readyz", "/metrics"})


@dataclass(frozen=True, slots=True)
class GateLimits:
    concurrency: int
    queue: int
    wait_seconds: float


class ShedError(Exception):
    """The gate refused the request."""

    def __init__(self, gate: str, retry_after_seconds: int) -> None:
        super().__init__(f"{gate} is at capacity")
        self.gate = gate
        self.retry_after_seconds = retry_after_seconds


class AdmissionGate:
    """``limits.concurrency`` requests run at once; up to ``limits.queue`` more wait for a
    place, each at most ``limits.wait_seconds``; any other is shed at once."""

    def __init__(
        self, name: str, limits: GateLimits, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self._limits = limits
        self._slots = anyio.Semaphore(limits.concurrency)
        self._waiting = 0
        self._clock = clock
        self._sheds: deque[float] = deque(maxlen=1024)  # when recent requests were shed

    @property
    def running(self) -> int:
        return self._limits.concurrency - self._slots.value

    @property
    def waiting(self) -> int:
        return self._waiting

    def shed_in_last(self, seconds: float) -> int:
        horizon = self._clock() - seconds
        return sum(1 for moment in self._sheds if moment >= horizon)

    async def acquire(self) -> None:
        """A place, or ``ShedError``."""
        if self._slots.value > 0:
            await self._slots.acquire()  # free: does not wait
            return
        if self._waiting >= self._limits.queue:
            raise self._shed()
        self._waiting += 1
        try:
            with anyio.move_on_after(self._limits.wait_seconds):
                await self._slots.acquire()
                return
        finally:
            self._waiting -= 1
        raise self._shed()

    def release(self) -> None:
        self._slots.release()

    def _shed(self) -> ShedError:
        self._sheds.append(self._clock())
        # come back when the queue ahead would have drained, at least a second from now
        retry = max(1, math.ceil(self._limits.wait_seconds * 2))
        return ShedError(self.name, retry)


class Admission:
    """The gates of one API process, and whether it is shedding hard."""

    def __init__(self, gates: dict[str, AdmissionGate], *, hard_sheds: int,
                 hard_window_seconds: float) -> None:  # fmt: skip
        self.gates = gates
        self._hard_sheds = hard_sheds
        self._window = hard_window_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> Admission:
        s, wait = settings, settings.admission_wait_seconds
        limits = {
            SEARCH: GateLimits(s.admission_search_concurrency, s.admission_search_queue, wait),
            ASK: GateLimits(s.admission_ask_concurrency, s.admission_ask_queue, wait),
            WRITE: GateLimits(s.admission_write_concurrency, s.admission_write_queue, wait),
            READ: GateLimits(s.admission_read_concurrency, s.admission_read_queue, wait),
            PAGE: GateLimits(s.admission_read_concurrency, s.admission_read_queue, wait),
            STREAM: GateLimits(s.admission_stream_concurrency, 0, 0.0),
        }
        return cls(
            {name: AdmissionGate(name, limit) for name, limit in limits.items()},
            hard_sheds=settings.admission_unready_sheds,
            hard_window_seconds=settings.admission_unready_window_seconds,
        )

    def shedding_hard(self) -> list[str]:
        """The gates that shed at least ``hard_sheds`` requests in the last window: a
        balancer should send this process less work for now."""
        return [
            name
            for name, gate in self.gates.items()
            if name != STREAM and gate.shed_in_last(self._window) >= self._hard_sheds
        ]


def gate_of(method: str, path: str, query: bytes = b"") -> str | None:
    """The class of an endpoint; ``None`` for the health routes, which are never gated.
    The web page's search and answer are searches and answers too."""
    if path in UNGATED:
        return None
    if path == "/search" and b"q=" in query:
        return SEARCH
    if path == "/" and b"question=" in query:
        return ASK
    if path.startswith("/v1/"):
        if path == "/v1/search":
            return SEARCH
        if path == "/v1/ask":
            return ASK
        if path.endswith("/events"):
            return STREAM
        return READ if method in ("GET", "HEAD") else WRITE
    return PAGE


class AdmissionMiddleware:
    """Puts every request through its class's gate; a shed request gets a 503 problem with
    ``Retry-After`` before any work is done for it, and is counted."""

    def __init__(
        self,
        app: ASGIApp,
        admission: Admission,
        on_shed: Callable[[str], None] | None = None,
    ) -> None:
        self._app = app
        self._admission = admission
        self._on_shed = on_shed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        name = gate_of(
            scope.get("method", "GET"), scope.get("path", ""), scope.get("query_string", b"")
        )
        if name is None:
            await self._app(scope, receive, send)
            return
        gate = self._admission.gates[name]
        try:
            await gate.acquire()
        except ShedError as shed:
            if self._on_shed is not None:
                self._on_shed(name)
            refusal = problem(
                503,
                f"SKR is at capacity for {name} requests; try again in "
                f"{shed.retry_after_seconds} s",
                headers={"Retry-After": str(shed.retry_after_seconds)},
            )
            await refusal(scope, receive, send)
            return
        try:
            await self._app(scope, receive, send)
        finally:
            gate.release()
