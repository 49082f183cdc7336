"""Following a job: SSE parsing, the stream against the API, disconnects, and the fallback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from skr.adapters.memory.job_events import MemoryJobEvents
from skr.entrypoints.api.app import create_app
from skr.entrypoints.cli.job_watch import follow_job_events, poll_job, sse_events
from skr.settings import Settings
from tests.fakes.fake_container import fake_container_factory
from tests.unit.test_ingest_and_worker import PAGE, URL


def test_sse_events_are_parsed_as_the_spec_says() -> None:
    lines = [
        ": keep-alive", "", "event: job", "data: {\"a\":", "data: 1}", "",
        "data:no space", "id: 7", "", "event: empty", "", "retry: 10",
    ]  # fmt: skip
    assert list(sse_events(lines)) == [("job", '{"a":\n1}'), ("message", "no space")]


def test_following_the_api_stream_ends_with_the_final_job(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path), fake_container_factory({URL: PAGE}))
    seen: list[str] = []
    with TestClient(app) as client:
        job_id = client.post("/v1/ingest", json={"url": URL}).json()["job_id"]
        job = follow_job_events(client, job_id, lambda j: seen.append(j["status"]))
    assert job is not None and job["status"] == "succeeded"
    assert seen[-1] == "succeeded"


def stream_client(status: int, body: str) -> httpx.Client:
    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text=body, headers={"content-type": "text/event-stream"})

    return httpx.Client(base_url="http://skr.test", transport=httpx.MockTransport(answer))


def test_a_stream_that_fails_or_ends_early_leaves_the_caller_to_poll() -> None:
    running = 'event: job\ndata: {"status": "running"}\n\n'
    calls: list[dict[str, Any]] = []
    assert follow_job_events(stream_client(404, "{}"), "j", calls.append) is None
    assert follow_job_events(stream_client(200, running), "j", calls.append) is None
    assert (
        follow_job_events(stream_client(200, "event: job\ndata: {oops\n\n"), "j", calls.append)
        is None
    )

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    dead = httpx.Client(base_url="http://skr.test", transport=httpx.MockTransport(refuse))
    assert follow_job_events(dead, "j", calls.append) is None
    assert calls == [{"status": "running"}]
    states = iter(["queued", "running", "succeeded"])
    job = poll_job(lambda: {"status": next(states)}, calls.append, interval=0)
    assert job == {"status": "succeeded"}


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` under a real uvicorn on loopback, in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", access_log=False, loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_a_stream_stops_as_soon_as_its_client_goes_away(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path), fake_container_factory({}, run_worker=False))
    with served(app) as base:
        events = app.state.container.adapters.backend.job_events
        assert isinstance(events, MemoryJobEvents)
        job_id = httpx.post(f"{base}/v1/ingest", json={"url": URL}).json()["job_id"]
        with httpx.stream("GET", f"{base}/v1/jobs/{job_id}/events") as response:
            stream = sse_events(response.iter_lines())
            first = next(stream)
            assert first[0] == "job" and '"status":"queued"' in first[1]
            registered = time.monotonic() + 2.0  # the server may still be between sends
            while events.watched_jobs != 1:
                assert time.monotonic() < registered, "the stream stopped while its client read"
                time.sleep(0.01)
        gone = time.monotonic()
        while events.watched_jobs:  # the job never runs: only the disconnect ends the stream
            assert time.monotonic() - gone < 3.0, "the stream outlived its client"
            time.sleep(0.01)
