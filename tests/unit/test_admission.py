"""Admission control: gates admit, queue briefly and shed; the API sheds with 503 and
Retry-After while health stays up, and /readyz turns unready while shedding hard."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from fastapi.testclient import TestClient

from skr.entrypoints.api.admission import (
    ASK,
    PAGE,
    READ,
    SEARCH,
    STREAM,
    WRITE,
    AdmissionGate,
    GateLimits,
    ShedError,
    gate_of,
)
from skr.entrypoints.api.app import create_app
from skr.settings import Settings
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
        data_dir=tmp_path, admission_search_concurrency=1, admission_search_queue=0,
        admission_unready_sheds=3, admission_unready_window_seconds=0.5,
    )  # fmt: skip
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
