"""Admission control: each class of endpoint runs at most so many requests at once, lets
a bounded number wait briefly, and sheds the rest at once with 503 and ``Retry-After``,
so overload costs the extra requests, not every request's latency.

Most classes are gated by the middleware, before any work. Searches are gated by their
handler, around the work a cached result does not need (``Admission.admitted``): a
cached search costs far less than one that embeds and ranks, and gated before the cache it
would wait behind them (docs/benchmarks/history.md, "Runs U–W"). Questions are gated by
their handler too, around the work done here (finding the passages, an extractive
answer), not around the answer model's call: that is remote, bounded by its own limit
(``SKR_LLM_MAX_CONCURRENCY``, ``SKR_LLM_QUEUE_SECONDS``) and falls back to an extractive
answer, so a slow model costs degraded answers, not shed questions."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from skr.domain.errors import OverloadedError
from skr.entrypoints.api.problems import problem
from skr.settings import Settings

# classes of endpoint, each with its own gate: one never starves another
SEARCH, ASK, WRITE, READ, STREAM, PAGE = "search", "ask", "write", "read", "stream", "page"
UNGATED = frozenset({"/livez", "/readyz", "/metrics"})
GATED_BY_HANDLER = frozenset({SEARCH, ASK})


@dataclass(frozen=True, slots=True)
class GateLimits:
    concurrency: int
    queue: int
    wait_seconds: float
    # adaptive: the running limit shrinks while admitted requests take longer than
    # ``tolerance`` times what they took when they ran alone, and grows back when not
    adaptive: bool = False
    tolerance: float = 1.5
    slack_seconds: float = 0.01


class LatencyLimit:
    """How many requests a gate runs at once, adapted to their latency (AIMD).

    The baseline is the 90th percentile of the latest requests that ran alone (nothing
    else in the gate), which is what a user sees without load; each interval, if the
    90th percentile of the requests that ended in it exceeds ``tolerance`` × baseline
    + ``slack_seconds`` (so that the jitter of millisecond requests moves nothing) while
    the gate was full, the limit drops by a fifth (slow requests in a gate that was not
    full were slowed by something else: running fewer would not help); if the gate was
    full and latency was within bounds, it grows by one, up to ``maximum``. Overload
    thus costs the requests beyond what keeps latency near its unloaded value, not every
    request's latency. Not a library: the maintained ones
    (e.g. Netflix's concurrency-limits) are Java; this is their Gradient idea in a few lines.
    """

    def __init__(
        self,
        maximum: int,
        *,
        tolerance: float,
        slack_seconds: float = 0.01,
        interval_seconds: float = 0.5,
        min_samples: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maximum = maximum
        self.value = float(maximum)
        self._tolerance = tolerance
        self._slack = slack_seconds
        self._interval = interval_seconds
        self._min_samples = min_samples
        self._clock = clock
        self._alone: deque[float] = deque(maxlen=200)  # latencies of requests that ran alone
        self._recent: list[float] = []
        self._was_full = False
        self._next_check = clock() + interval_seconds

    @property
    def limit(self) -> int:
        return max(1, int(self.value))

    def baseline(self) -> float | None:
        if len(self._alone) < self._min_samples:
            return None
        return _p90(list(self._alone))

    def bound(self) -> float | None:
        """The latency admitted requests are held to (``None`` until a baseline is known)."""
        baseline = self.baseline()
        return None if baseline is None else self._tolerance * baseline + self._slack

    def record(self, seconds: float, *, alone: bool, full: bool) -> None:
        """One admitted request took ``seconds``; it ran ``alone``; the gate was ``full``."""
        if alone:
            self._alone.append(seconds)
        self._recent.append(seconds)
        self._was_full = self._was_full or full
        now = self._clock()
        if now < self._next_check:
            return
        self._next_check = now + self._interval
        recent, self._recent = self._recent, []
        was_full, self._was_full = self._was_full, False
        bound = self.bound()
        if bound is None or len(recent) < self._min_samples:
            return
        if _p90(recent) > bound and was_full:  # slow because of how many ran at once
            self.value = max(1.0, self.value * 0.8)
        elif was_full:
            self.value = min(float(self.maximum), self.value + 1)


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


class ShedError(Exception):
    """The gate refused the request."""

    def __init__(self, gate: str, retry_after_seconds: int) -> None:
        super().__init__(f"{gate} is at capacity")
        self.gate = gate
        self.retry_after_seconds = retry_after_seconds


class AdmissionGate:
    """Up to the limit (``limits.concurrency``, or less while adaptive and latency is high)
    requests run at once; up to ``limits.queue`` more wait for a place, each at most
    ``limits.wait_seconds`` (while the adaptive limit is down, at most the latency bound,
    as CoDel bounds a packet's time in a queue), first come first served; any other is
    shed at once."""

    def __init__(
        self, name: str, limits: GateLimits, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self._limits = limits
        self._running = 0
        self._waiters: deque[anyio.Event] = deque()
        self._clock = clock
        self._sheds: deque[float] = deque(maxlen=1024)  # when recent requests were shed
        self.adaptive = (
            LatencyLimit(
                limits.concurrency,
                tolerance=limits.tolerance,
                slack_seconds=limits.slack_seconds,
                clock=clock,
            )
            if limits.adaptive
            else None
        )

    @property
    def limit(self) -> int:
        return self._limits.concurrency if self.adaptive is None else self.adaptive.limit

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def shed_in_last(self, seconds: float) -> int:
        horizon = self._clock() - seconds
        return sum(1 for moment in self._sheds if moment >= horizon)

    async def acquire(self) -> None:
        """A place, or ``ShedError``."""
        if self._running < self.limit and not self._waiters:
            self._running += 1
            return
        if len(self._waiters) >= self._limits.queue:
            raise self.refuse()
        handed = anyio.Event()
        self._waiters.append(handed)
        try:
            with anyio.move_on_after(self._wait_seconds()):
                await handed.wait()
        except BaseException:  # cancelled (the client left): give up the place or the turn
            if handed.is_set():
                self.release()
            else:
                self._waiters.remove(handed)
            raise
        if handed.is_set():
            return
        self._waiters.remove(handed)
        raise self.refuse()

    @asynccontextmanager
    async def place(self) -> AsyncIterator[None]:
        """A place for the work inside (``ShedError`` before it, if none), the work timed
        for the adaptive limit."""
        await self.acquire()
        alone = self._running == 1
        began = time.monotonic()
        try:
            yield
        finally:
            self.release(time.monotonic() - began, alone=alone)

    def _wait_seconds(self) -> float:
        """While the adaptive limit is down (overload), no longer than the latency bound."""
        adaptive = self.adaptive
        bound = None if adaptive is None else adaptive.bound()
        if adaptive is None or bound is None or adaptive.limit >= adaptive.maximum:
            return self._limits.wait_seconds
        return min(bound, self._limits.wait_seconds)

    def release(self, seconds: float | None = None, *, alone: bool = False) -> None:
        """The end of an admitted request that took ``seconds`` (``None``: not measured)."""
        full = self._running >= self.limit
        self._running -= 1
        if self.adaptive is not None and seconds is not None:
            self.adaptive.record(seconds, alone=alone, full=full)
        while self._waiters and self._running < self.limit:
            self._running += 1
            self._waiters.popleft().set()

    def refuse(self) -> ShedError:
        """A request of this class shed (here, or by the process's in-flight cap)."""
        self._sheds.append(self._clock())
        # come back when the queue ahead would have drained, at least a second from now
        retry = max(1, math.ceil(self._limits.wait_seconds * 2))
        return ShedError(self.name, retry)


class Admission:
    """The gates of one API process, and whether it is shedding hard."""

    def __init__(self, gates: dict[str, AdmissionGate], *, hard_sheds: int,
                 hard_window_seconds: float, max_in_flight: int = 1_000_000) -> None:  # fmt: skip
        self.gates = gates
        self._hard_sheds = hard_sheds
        self._window = hard_window_seconds
        self._max_in_flight = max_in_flight
        self.in_flight = 0
        self.on_shed: Callable[[str], None] | None = None  # counts a shed request

    def enter(self) -> bool:
        """One more request in hand (running, or waiting at a gate), unless the process
        already holds ``max_in_flight``: a burst of new requests, each cheap but all at
        once (a spike's first second), would otherwise queue on the one event loop."""
        if self.in_flight >= self._max_in_flight:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1

    def shed(self, name: str) -> None:
        if self.on_shed is not None:
            self.on_shed(name)

    @asynccontextmanager
    async def admitted(self, name: str) -> AsyncIterator[None]:
        """A place at gate ``name`` for the work inside, measured for its adaptive limit;
        shed: ``OverloadedError`` (503 + ``Retry-After``, as from the middleware)."""
        try:
            async with self.gates[name].place():
                yield
        except ShedError as shed:
            self.shed(name)
            raise OverloadedError(_shed_detail(shed), shed.retry_after_seconds) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> Admission:
        s, wait = settings, settings.admission.wait_seconds

        def adapting(concurrency: int, queue: int) -> GateLimits:
            return GateLimits(
                concurrency,
                queue,
                wait,
                adaptive=s.admission.adaptive,
                tolerance=s.admission.latency_tolerance,
                slack_seconds=s.admission.latency_slack_seconds,
            )

        limits = {
            SEARCH: adapting(s.admission.search_concurrency, s.admission.search_queue),
            ASK: adapting(s.admission.ask_concurrency, s.admission.ask_queue),
            WRITE: GateLimits(s.admission.write_concurrency, s.admission.write_queue, wait),
            READ: adapting(s.admission.read_concurrency, s.admission.read_queue),
            PAGE: GateLimits(s.admission.read_concurrency, s.admission.read_queue, wait),
            STREAM: GateLimits(s.admission.stream_concurrency, 0, 0.0),
        }
        return cls(
            {name: AdmissionGate(name, limit) for name, limit in limits.items()},
            hard_sheds=settings.admission.unready_sheds,
            hard_window_seconds=settings.admission.unready_window_seconds,
            max_in_flight=settings.admission.max_in_flight,
        )

    def shedding_hard(self) -> list[str]:
        """The gates that shed at least ``hard_sheds`` requests in the last window: a
        balancer should send this process less work for now."""
        return [
            name
            for name, gate in self.gates.items()
            if name != STREAM and gate.shed_in_last(self._window) >= self._hard_sheds
        ]


def _shed_detail(shed: ShedError) -> str:
    return f"SKR is at capacity for {shed.gate} requests; try again in {shed.retry_after_seconds} s"


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
    """Puts every request through its class's gate (but those ``GATED_BY_HANDLER``); a
    shed request gets a 503 problem with ``Retry-After`` before any work is done for it,
    and is counted."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self._app = app
        self._admission = admission

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
        counted = name != STREAM  # an event stream stays open for minutes: its own gate
        if counted and not self._admission.enter():
            await self._refuse(self._admission.gates[name].refuse(), scope, receive, send)
            return
        try:
            if name in GATED_BY_HANDLER:
                await self._app(scope, receive, send)
                return
            try:
                async with self._admission.gates[name].place():
                    await self._app(scope, receive, send)
            except ShedError as shed:  # only ever from the place, before the app ran
                await self._refuse(shed, scope, receive, send)
        finally:
            if counted:
                self._admission.leave()

    async def _refuse(self, shed: ShedError, scope: Scope, receive: Receive, send: Send) -> None:
        self._admission.shed(shed.gate)
        refusal = problem(
            503, _shed_detail(shed), headers={"Retry-After": str(shed.retry_after_seconds)}
        )
        await refusal(scope, receive, send)
