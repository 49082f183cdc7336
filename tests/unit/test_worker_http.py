"""`skr worker`'s probes and metrics: served on SKR_WORKER_HTTP_PORT, nothing without it."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import httpx
import pytest

from skr.domain.models import JobKind
from skr.entrypoints.worker import serve_worker_http, worker_app
from skr.settings import Settings, WorkerSettings
from tests.fakes.fake_container import fake_container_factory

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_probes_and_metrics(tmp_path: Path) -> None:
    factory = fake_container_factory({}, run_worker=False)
    async with factory(Settings(data_dir=tmp_path)) as container:
        await container.adapters.backend.job_queue.enqueue(
            JobKind.INGEST, "c", "http://x.test/", {}
        )
        transport = httpx.ASGITransport(app=worker_app(container))
        async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
            assert (await client.get("/livez")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["store"] == "ok"
            text = (await client.get("/metrics")).text
            assert "skr_job_queue_depth 1.0" in text
            assert "skr_job_queue_oldest_age_seconds" in text
            assert "skr_ingest_pages" in text  # the worker's own counters are here
            assert (await client.get("/docs")).status_code == 404


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_served_on_the_configured_port_until_cancelled(tmp_path: Path) -> None:
    port = _free_port()
    settings = Settings(data_dir=tmp_path, worker=WorkerSettings(http_port=port))
    async with (
        fake_container_factory({}, run_worker=False)(settings) as container,
        anyio.create_task_group() as group,
    ):
        group.start_soon(serve_worker_http, container)
        async with httpx.AsyncClient() as client:
            with anyio.fail_after(10):
                while True:
                    try:
                        response = await client.get(f"http://127.0.0.1:{port}/livez")
                        break
                    except httpx.TransportError:
                        await anyio.sleep(0.05)
        assert response.json() == {"status": "ok"}
        group.cancel_scope.cancel()


async def test_without_a_port_it_only_waits(tmp_path: Path) -> None:
    async with fake_container_factory({}, run_worker=False)(Settings(data_dir=tmp_path)) as c:
        with anyio.move_on_after(0.2) as scope:
            await serve_worker_http(c)
        assert scope.cancelled_caught
