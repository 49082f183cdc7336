"""A running crawl paused, resumed and cancelled through the API, and a crawl that
survives `kill -9` of its server: the restarted server continues where it was."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import SHARED_SITE, SkrServer, free_port, static_site

pytestmark = pytest.mark.slow

TUTORIAL_PAGES = 12
CONCURRENCY = 2
SLOW_SITE_SECONDS = 0.4


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[str, type]]:
    if not SHARED_SITE.is_dir():
        pytest.fail(f"the Flask docs are missing: {SHARED_SITE}")
    with static_site(SHARED_SITE, delay_seconds=SLOW_SITE_SECONDS) as (base, handler):
        yield base, handler


def start_server(root: Path, port: int | None = None) -> SkrServer:
    skr = SkrServer(
        root / "data", port or free_port(), root / "server.log",
        SKR_CRAWL_HOST_INTERVAL_SECONDS="0", SKR_CRAWL_CONCURRENCY=str(CONCURRENCY),
        SKR_JOB_LEASE_SECONDS="3", SKR_OCR_ENABLED="false",
    )  # fmt: skip
    skr.start()
    return skr


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SkrServer]:
    skr = start_server(tmp_path)
    try:
        yield skr
    finally:
        skr.stop()


def start_crawl(server: SkrServer, base: str, collection: str) -> str:
    httpx.post(f"{server.url}/v1/collections", json={"name": collection}, timeout=10)
    body = {
        "url": f"{base}/tutorial/index.html",
        "collection": collection,
        "crawl": {"max_depth": 1, "max_pages": 30, "prefix": f"{base}/tutorial/", "sitemap": False},
    }
    accepted = httpx.post(f"{server.url}/v1/ingest", json=body, timeout=10)
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["job_id"])


def job(server: SkrServer, job_id: str) -> dict[str, object]:
    return httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=10).json()  # type: ignore[no-any-return]


def wait_until(
    server: SkrServer, job_id: str, done: object, timeout: float = 120
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = job(server, job_id)
        if done(current):  # type: ignore[operator]
            return current
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never got there: {current}")


def fetched(current: dict[str, object]) -> int:
    return int(current["counters"]["fetched"])  # type: ignore[index]


def control(server: SkrServer, job_id: str, action: str) -> dict[str, object]:
    answer = httpx.post(f"{server.url}/v1/jobs/{job_id}/{action}", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def tutorial_fetches(handler: type) -> Counter[str]:
    return Counter(p for _, p, _ in handler.requests if p.startswith("/tutorial/"))  # type: ignore[attr-defined]


def test_pause_stops_a_crawl_and_resume_finishes_it(
    server: SkrServer, site: tuple[str, type]
) -> None:
    base, handler = site
    handler.requests.clear()  # type: ignore[attr-defined]
    job_id = start_crawl(server, base, "paused")
    wait_until(server, job_id, lambda j: fetched(j) >= 3)
    assert control(server, job_id, "pause")["status"] == "paused"
    time.sleep(SLOW_SITE_SECONDS * 2)  # fetches in flight end (or are dropped)
    frozen = job(server, job_id)
    requests_then = len(handler.requests)  # type: ignore[attr-defined]
    time.sleep(1.5)
    assert job(server, job_id)["status"] == "paused"
    assert fetched(job(server, job_id)) == fetched(frozen), "a paused crawl went on"
    assert len(handler.requests) == requests_then  # type: ignore[attr-defined]
    assert control(server, job_id, "resume")["status"] == "queued"
    done = wait_until(server, job_id, lambda j: j["status"] in {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    assert done["counters"]["indexed"] == TUTORIAL_PAGES  # type: ignore[index]
    again = [p for p, n in tutorial_fetches(handler).items() if n > 1]
    assert len(again) <= CONCURRENCY, f"pages fetched again after resume: {again}"


def test_cancel_stops_a_crawl_for_good(server: SkrServer, site: tuple[str, type]) -> None:
    base, handler = site
    job_id = start_crawl(server, base, "cancelled")
    wait_until(server, job_id, lambda j: fetched(j) >= 2)
    assert control(server, job_id, "cancel")["status"] == "cancelled"
    time.sleep(SLOW_SITE_SECONDS * 2)
    requests_then = len(handler.requests)  # type: ignore[attr-defined]
    time.sleep(1.5)
    final = job(server, job_id)
    assert final["status"] == "cancelled"
    assert fetched(final) < TUTORIAL_PAGES
    assert len(handler.requests) == requests_then  # type: ignore[attr-defined]
    refused = httpx.post(f"{server.url}/v1/jobs/{job_id}/resume", timeout=10)
    assert refused.status_code == 409


def test_a_crawl_survives_kill_9_and_continues_where_it_was(
    tmp_path: Path, site: tuple[str, type]
) -> None:
    base, handler = site
    handler.requests.clear()  # type: ignore[attr-defined]
    first = start_server(tmp_path)
    try:
        job_id = start_crawl(first, base, "restarted")
        before = wait_until(first, job_id, lambda j: fetched(j) >= 4)
        first.kill()
    finally:
        first.stop()
    assert before["status"] == "running"
    second = start_server(tmp_path, first.port)
    try:
        # well inside the URL leases the killed run held (120 s): the new run takes
        # them over with the job
        done = wait_until(
            second, job_id, lambda j: j["status"] in {"succeeded", "failed"}, timeout=60
        )
    finally:
        second.stop()
    assert done["status"] == "succeeded", done
    assert done["counters"]["indexed"] == TUTORIAL_PAGES, done  # type: ignore[index]
    assert done["counters"]["discovered"] == TUTORIAL_PAGES  # type: ignore[index]
    again = [p for p, n in tutorial_fetches(handler).items() if n > 1]
    assert len(again) <= CONCURRENCY, f"pages fetched again after the restart: {again}"
    with sqlite3.connect(tmp_path / "data" / "skr.sqlite3") as db:
        urls = [u for (u,) in db.execute("SELECT url FROM documents")]
        chunks = db.execute(
            "SELECT count(*), count(DISTINCT document_id || ':' || ordinal) FROM chunks"
        ).fetchone()
    assert len(urls) == len(set(urls)) == TUTORIAL_PAGES
    assert chunks[0] == chunks[1], "duplicate chunks"
