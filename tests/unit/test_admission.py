"""Admission control: gates admit, queue briefly and shed; the API sheds with 503 and
Retry-After while health stays up, and /readyz turns unready while shedding hard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from skr.entrypoints.api.admission import (
    ASK,
    PAGE,
    READ,
    SEARCH,
    STREAM,
    WRITE,
    Admission,
    AdmissionGate,
    AdmissionMiddleware,
    GateLimits,
    LatencyLimit,
    ShedError,
    gate_of,
)
from skr.entrypoints.api.app import create_app
from skr.settings import AdmissionSettings, Settings
from tests.fakes.fake_clock import ManualClock
from tests.fakes.fake_container import fake_container_factory


@pytest.mark.parametrize(
    ("method", "path", "gate"),
    [
        ("GET", "/v1/search", SEARCH),
        ("POST", "/v1/ask", ASK),
        ("POST", "/v1/ingest", WRITE),
        ("POST", "/v1/jobs/abc/pause", WRITE),
        ("DELETE", "/v1/documents/abc", WRITE),
        ("GET", "/v1/jobs/abc", READ),
        ("GET", "/v1/jobs/abc/events", STREAM),
        ("GET", "/", PAGE),
        ("GET", "/?question=what", ASK),
        ("GET", "/search?q=blueprints", SEARCH),
        ("GET", "/search", PAGE),
        ("GET", "/livez", None),
        ("GET", "/readyz", None),
        ("GET", "/metrics", None),
    ],
)
def test_each_endpoint_has_its_class(method: str, path: str, gate: str | None) -> None:
    route, _, query = path.partition("?")
    assert gate_of(method, route, query.encode()) == gate


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_gate_runs_its_limit_queues_briefly_and_sheds_the_rest() -> None:
    gate = AdmissionGate("search", GateLimits(concurrency=2, queue=1, wait_seconds=0.3))
    await gate.acquire()
    await gate.acquire()
    assert gate.running == 2
    outcomes: list[str] = []

    async def third() -> None:  # waits for a place, and gets one when a runner ends
        await gate.acquire()
        outcomes.append("admitted after waiting")

    async with anyio.create_task_group() as group:
        group.start_soon(third)
        await anyio.sleep(0.05)
        assert gate.waiting == 1
        with pytest.raises(ShedError) as shed:  # the queue is full: shed at once
            with anyio.fail_after(0.05):
                await gate.acquire()
        assert shed.value.retry_after_seconds >= 1
        gate.release()
    assert outcomes == ["admitted after waiting"]
    began = anyio.current_time()
    with pytest.raises(ShedError):  # waits its 0.3 s, then is shed
        await gate.acquire()
    assert 0.25 <= anyio.current_time() - began < 1.0
    assert gate.shed_in_last(5) == 2
    assert gate.waiting == 0


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path,
        admission=AdmissionSettings(
            search_concurrency=1, search_queue=0, unready_sheds=3, unready_window_seconds=0.5
        ),
    )
    app = create_app(settings, fake_container_factory({}))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_full_class_is_shed_with_503_while_others_and_health_go_on(client: TestClient) -> None:
    assert client.get("/readyz").status_code == 200
    gate = client.app.state.admission.gates[SEARCH]  # type: ignore[attr-defined]
    client.portal.call(gate.acquire)  # type: ignore[union-attr]  # a search in progress
    try:
        for _ in range(4):
            shed = client.get("/v1/search", params={"q": "blueprints"})
            assert shed.status_code == 503
            assert shed.headers["content-type"].startswith("application/problem+json")
            assert int(shed.headers["retry-after"]) >= 1
            assert "capacity" in shed.json()["detail"]
        assert client.get("/livez").status_code == 200
        assert client.get("/v1/jobs").status_code == 200  # reads have their own gate
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "shedding search" in ready.json()["checks"]["admission"]
        assert 'skr_http_shed_total{gate="search"} 4.0' in client.get("/metrics").text
    finally:
        gate.release()
    time.sleep(0.6)  # the window passes: ready again, and searches are admitted
    assert client.get("/readyz").status_code == 200
    assert client.get("/v1/search", params={"q": "blueprints"}).status_code == 200


def test_a_cached_search_is_answered_while_the_search_gate_is_full(client: TestClient) -> None:
    """Only a search that must run needs a place: a cached one (~0.3 ms) does not queue
    behind searches that embed and rank."""
    assert client.get("/v1/search", params={"q": "blueprints"}).status_code == 200  # cached now
    gate = client.app.state.admission.gates[SEARCH]  # type: ignore[attr-defined]
    client.portal.call(gate.acquire)  # type: ignore[union-attr]  # the one place is taken
    try:
        assert client.get("/v1/search", params={"q": "blueprints"}).status_code == 200
        assert gate.running == 1
        for path in ("/v1/search", "/search"):  # the API and the web page alike
            shed = client.get(path, params={"q": "templates"})
            assert shed.status_code == 503
            assert shed.headers["content-type"].startswith("application/problem+json")
            assert shed.headers["retry-after"] == "1"
            assert "capacity for search" in shed.json()["detail"]
        assert 'skr_http_shed_total{gate="search"} 2.0' in client.get("/metrics").text
    finally:
        gate.release()
    assert client.get("/v1/search", params={"q": "templates"}).status_code == 200
    assert gate.running == 0  # the admitted search gave its place back


def adaptive_limit(clock: ManualClock, maximum: int = 10) -> LatencyLimit:
    return LatencyLimit(maximum, tolerance=1.5, slack_seconds=0.01, clock=clock)


def test_the_limit_holds_until_requests_that_ran_alone_give_a_baseline() -> None:
    clock = ManualClock()
    limit = adaptive_limit(clock)
    for _ in range(20):  # slow, but nothing ran alone yet: nothing to compare with
        clock.now += 0.1
        limit.record(1.0, alone=False, full=True)
    assert (limit.limit, limit.baseline(), limit.bound()) == (10, None, None)


def test_the_limit_shrinks_while_latency_exceeds_its_bound_and_grows_back() -> None:
    clock = ManualClock()
    limit = adaptive_limit(clock)
    for _ in range(10):
        limit.record(0.020, alone=True, full=False)
    assert limit.baseline() == pytest.approx(0.020)
    assert limit.bound() == pytest.approx(1.5 * 0.020 + 0.01)

    def interval(seconds: float, *, full: bool) -> None:
        for _ in range(6):
            limit.record(seconds, alone=False, full=full)
        clock.now += 0.6
        limit.record(seconds, alone=False, full=full)  # the interval's check

    limits = []
    for _ in range(12):  # 60 ms against a 40 ms bound: a fifth less each interval
        interval(0.060, full=True)
        limits.append(limit.limit)
    assert limits[:4] == [8, 6, 5, 4] and limits[-1] == 1
    interval(0.035, full=False)  # within bounds but the gate not full: no reason to grow
    assert limit.limit == 1
    interval(0.500, full=False)  # slow, but not for how many ran: no reason to shrink
    assert limit.limit == 1
    for _ in range(4):  # within bounds and full: one more per interval
        interval(0.035, full=True)
    assert limit.limit == 5
    for _ in range(20):
        interval(0.030, full=True)
    assert limit.limit == 10  # never above the configured concurrency


def test_slow_requests_in_a_gate_that_was_not_full_move_no_limit() -> None:
    clock = ManualClock()
    limit = adaptive_limit(clock)
    for _ in range(10):
        limit.record(0.020, alone=True, full=False)
    for _ in range(10):  # e.g. the model busy with an ingest batch, few searches running
        for _ in range(6):
            limit.record(0.300, alone=False, full=False)
        clock.now += 0.6
        limit.record(0.300, alone=False, full=False)
    assert limit.limit == 10


def test_millisecond_jitter_moves_no_limit() -> None:
    clock = ManualClock()
    limit = adaptive_limit(clock)
    for _ in range(10):
        limit.record(0.001, alone=True, full=False)
    for _ in range(10):  # 8× the baseline, yet within the 10 ms slack
        for _ in range(6):
            limit.record(0.008, alone=False, full=True)
        clock.now += 0.6
        limit.record(0.008, alone=False, full=True)
    assert limit.limit == 10


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_adaptive_gate_runs_fewer_and_queues_no_longer_than_its_bound() -> None:
    clock = ManualClock()
    limits = GateLimits(concurrency=4, queue=8, wait_seconds=5.0, adaptive=True)
    gate = AdmissionGate("search", limits, clock=clock)
    for _ in range(10):  # unloaded: 20 ms each, run alone
        await gate.acquire()
        gate.release(0.020, alone=True)
    assert gate._wait_seconds() == 5.0  # the limit is not down: the full wait
    for _ in range(3):  # loaded: 200 ms each, the gate full
        for _ in range(7):
            running = gate.limit
            for _ in range(running):
                await gate.acquire()
            for _ in range(running):
                gate.release(0.200)
        clock.now += 0.6
    assert gate.limit < 4
    for _ in range(gate.limit):
        await gate.acquire()
    began = anyio.current_time()
    with pytest.raises(ShedError):  # waits the 40 ms bound, not the 5 s configured
        await gate.acquire()
    assert anyio.current_time() - began < 1.0
    assert gate.waiting == 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_waiters_get_places_in_the_order_they_came() -> None:
    gate = AdmissionGate("search", GateLimits(concurrency=1, queue=5, wait_seconds=2.0))
    await gate.acquire()
    order: list[int] = []

    async def waiter(n: int) -> None:
        await gate.acquire()
        order.append(n)
        gate.release()

    async with anyio.create_task_group() as group:
        for n in range(3):
            group.start_soon(waiter, n)
            await anyio.sleep(0.01)
        assert gate.waiting == 3
        gate.release()
    assert order == [0, 1, 2]
    assert (gate.running, gate.waiting) == (0, 0)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_waiter_cancelled_as_it_is_handed_a_place_gives_the_place_back() -> None:
    gate = AdmissionGate("search", GateLimits(concurrency=1, queue=5, wait_seconds=2.0))
    await gate.acquire()
    waiter = asyncio.ensure_future(gate.acquire())
    await asyncio.sleep(0.01)
    assert gate.waiting == 1
    gate.release()  # hands the place to the waiter...
    waiter.cancel()  # ...which is cancelled (its client left) before it resumes
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (gate.running, gate.waiting) == (0, 0)
    await gate.acquire()  # the place is free again
    assert gate.running == 1


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_past_its_in_flight_cap_a_process_sheds_every_class_but_streams() -> None:
    """Requests held at once across all classes are capped: a burst beyond it is shed at
    once, whatever its class; an event stream is not counted; a finished request frees
    its place."""
    release = anyio.Event()
    entered = anyio.Event()

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        await release.wait()
        await PlainTextResponse("done")(scope, receive, send)

    admission = Admission.from_settings(
        Settings(admission=AdmissionSettings(max_in_flight=1, adaptive=False))
    )
    shed: list[str] = []
    admission.on_shed = shed.append
    app = AdmissionMiddleware(slow_app, admission)
    transport = httpx.ASGITransport(app=app)
    with anyio.fail_after(10):  # without the cap, the refused requests would wait here
        async with httpx.AsyncClient(transport=transport, base_url="http://skr") as client:
            async with anyio.create_task_group() as tasks:
                held: list[httpx.Response] = []

                async def hold() -> None:
                    held.append(await client.get("/v1/jobs"))

                tasks.start_soon(hold)
                await entered.wait()
                assert admission.in_flight == 1
                for method, path in [
                    ("GET", "/v1/search?q=x"),
                    ("POST", "/v1/ask"),
                    ("GET", "/v1/jobs"),
                ]:
                    refused = await client.request(method, path)
                    assert refused.status_code == 503
                    assert refused.headers["retry-after"] == "1"
                entered = anyio.Event()
                tasks.start_soon(client.get, "/v1/jobs/abc/events")  # a stream: not counted
                await entered.wait()
                release.set()
            assert [r.status_code for r in held] == [200]
    assert shed == [SEARCH, ASK, READ]
    assert admission.in_flight == 0
    assert admission.gates[SEARCH].shed_in_last(60) == 1  # /readyz sees these sheds too
