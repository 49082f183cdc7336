"""Scale-out end to end: API and worker processes sharing one PostgreSQL and Redis on
loopback; a worker killed mid-way; job events across processes; Redis gone; PostgreSQL
gone and back."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from skr.entrypoints.cli.job_watch import sse_events
from tests.e2e.servers import SHARED_SITE, SkrServer, free_port, static_site, write_fallback_site
from tests.e2e.tcp_proxy import TcpProxy
from tests.e2e.test_end_to_end import wait_for_job
from tests.fixtures.stores import POSTGRES_URL

pytestmark = pytest.mark.slow

REDIS_URL = "redis://127.0.0.1:6379/0"
MULTI_PROCESS_PAGES = [
    "appcontext.html", "async-await.html", "blueprints.html", "cli.html", "config.html",
    "debugging.html", "design.html", "errorhandling.html", "extensiondev.html",
    "extensions.html", "installation.html", "logging.html",
]  # fmt: skip


@pytest.fixture(scope="module")
def site_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if SHARED_SITE.is_dir():
        return SHARED_SITE
    return write_fallback_site(tmp_path_factory.mktemp("site"))


@pytest.fixture
def database_url() -> Iterator[str]:
    """A database of its own for this test, dropped afterwards."""
    name = f"skr_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def process(tmp_path: Path, name: str, command: str, url: str, **env: str) -> SkrServer:
    return SkrServer(
        tmp_path / name, free_port(), tmp_path / f"{name}.log", command,
        SKR_DATABASE_URL=url, SKR_JOB_LEASE_SECONDS="2", SKR_JOB_POLL_SECONDS="0.1", **env,
    )  # fmt: skip


def migrate(tmp_path: Path, url: str) -> None:
    result = process(tmp_path, "migrate", "migrate", url).cli("migrate")
    assert result.returncode == 0, result.stderr
    assert "version" in result.stdout


def test_two_apis_two_workers_survive_a_killed_worker(
    tmp_path: Path, site_root: Path, database_url: str
) -> None:
    migrate(tmp_path, database_url)
    # ordinary pages; the 900 KB API reference alone takes a minute to embed on a busy
    # two-core machine and tests nothing more
    pages = [p for p in MULTI_PROCESS_PAGES if (site_root / p).is_file()] or sorted(
        p.name for p in site_root.glob("*.html")
    )
    apis = [  # the second runs two uvicorn worker processes behind one port
        process(tmp_path, f"api{i}", "serve", database_url, SKR_RUN_WORKERS="false",
                SKR_REDIS_URL=REDIS_URL, SKR_API_WORKERS=str(i))
        for i in (1, 2)
    ]  # fmt: skip
    worker_ports = {1: free_port(), 2: free_port()}  # their /livez, /readyz, /metrics
    workers = [
        process(tmp_path, f"worker{i}", "worker", database_url, SKR_REDIS_URL=REDIS_URL,
                SKR_WORKER_CONCURRENCY="2", SKR_WORKER_HTTP_PORT=str(worker_ports[i]))
        for i in (1, 2)
    ]  # fmt: skip
    with static_site(site_root, delay_seconds=0.5) as (base, _):
        for p in [*apis, *workers]:
            p.start()
        try:
            first, second = apis
            jobs = [
                httpx.post(f"{first.url}/v1/ingest", json={"url": f"{base}/{page}"}).json()[
                    "job_id"
                ]
                for page in pages
            ]
            deadline = time.monotonic() + 60
            while not any(
                httpx.get(f"{second.url}/v1/jobs/{j}").json()["status"] == "running" for j in jobs
            ):
                assert time.monotonic() < deadline, "no job started"
                time.sleep(0.05)
            workers[0].kill()  # SIGKILL in the middle of the work
            finished = [wait_for_job(second.url, j, timeout=180) for j in jobs]
            assert [f["status"] for f in finished] == ["succeeded"] * len(pages)
            documents = httpx.get(f"{second.url}/v1/documents", params={"limit": 100}).json()
            urls = sorted(d["url"] for d in documents["documents"])
            assert urls == sorted(f"{base}/{page}" for page in pages)
            hits = httpx.get(f"{second.url}/v1/search", params={"q": "register a blueprint"})
            assert hits.status_code == 200 and hits.json()["hits"]
            answer = httpx.post(f"{second.url}/v1/ask", json={"question": "What is a blueprint?"})
            assert answer.status_code == 200 and answer.json()["citations"]
            # the surviving worker's own metrics: its pages and embedder calls
            survivor = f"http://127.0.0.1:{worker_ports[2]}"
            assert httpx.get(f"{survivor}/readyz").json()["status"] == "ready"
            metrics = httpx.get(f"{survivor}/metrics").text
            assert 'skr_ingest_pages_total{outcome="indexed"}' in metrics
            assert "skr_embed_batch_duration_seconds_count" in metrics
        finally:
            for p in [*apis, *workers]:
                p.stop()
    with psycopg.connect(database_url) as conn:
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT document_id, ordinal FROM chunks "
            "GROUP BY document_id, ordinal HAVING count(*) > 1) d"
        ).fetchone()
        docs = conn.execute("SELECT count(*), count(DISTINCT url) FROM documents").fetchone()
    assert duplicates == (0,)
    assert docs == (len(pages), len(pages))


def test_a_crawl_continues_on_another_worker_after_kill_9(
    tmp_path: Path, site_root: Path, database_url: str
) -> None:
    if not (site_root / "tutorial" / "index.html").is_file():
        pytest.fail(f"the Flask tutorial is missing under {site_root}")
    migrate(tmp_path, database_url)
    slow = {"SKR_CRAWL_URL_LEASE_SECONDS": "4", "SKR_CRAWL_HOST_INTERVAL_SECONDS": "0",
            "SKR_OCR_ENABLED": "false", "SKR_REDIS_URL": REDIS_URL}  # fmt: skip
    api = process(tmp_path, "api", "serve", database_url, SKR_RUN_WORKERS="false", **slow)
    workers = [process(tmp_path, f"worker{i}", "worker", database_url, **slow) for i in (1, 2)]
    with static_site(site_root, delay_seconds=0.4) as (base, handler):
        api.start()
        workers[0].start()
        try:
            body = {
                "url": f"{base}/tutorial/index.html",
                "crawl": {"max_depth": 1, "prefix": f"{base}/tutorial/", "sitemap": False},
            }
            job_id = httpx.post(f"{api.url}/v1/ingest", json=body).json()["job_id"]
            deadline = time.monotonic() + 60
            while httpx.get(f"{api.url}/v1/jobs/{job_id}").json()["counters"]["fetched"] < 3:
                assert time.monotonic() < deadline, "the crawl did not start"
                time.sleep(0.05)
            workers[1].start()
            workers[0].kill()  # the only worker that held the crawl, mid-way
            done = wait_for_job(api.url, job_id, timeout=180)
        finally:
            for p in [api, *workers]:
                p.stop()
    assert done["status"] == "succeeded", done
    counters = done["counters"]
    assert counters["indexed"] == counters["discovered"] == 12, done  # type: ignore[index]
    fetches = [path for _, path, _ in handler.requests if path.startswith("/tutorial/")]  # type: ignore[attr-defined]
    assert len(fetches) - len(set(fetches)) <= 4  # at most the URLs in flight at the kill
    with psycopg.connect(database_url) as conn:
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT document_id, ordinal FROM chunks "
            "GROUP BY document_id, ordinal HAVING count(*) > 1) d"
        ).fetchone()
        docs = conn.execute("SELECT count(*), count(DISTINCT url) FROM documents").fetchone()
        states = conn.execute(
            "SELECT state, count(*) FROM crawl_frontier WHERE job_id = %s GROUP BY state",
            (job_id,),
        ).fetchall()
    assert duplicates == (0,)
    assert docs == (12, 12)
    assert dict(states) == {"indexed": 12}


def job_event_statuses(base: str, job_id: str, timeout: float = 60) -> list[str]:
    """The statuses of every `event: job` of the job's event stream, read until the server
    ends it; a stream that outlives ``timeout`` fails the test."""
    statuses = []
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", f"{base}/v1/jobs/{job_id}/events", timeout=30) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for event, data in sse_events(response.iter_lines()):
            assert time.monotonic() < deadline, f"the stream did not end: {statuses}"
            if event == "job":
                statuses.append(json.loads(data)["status"])
    return statuses


def test_job_events_reach_an_api_process_the_job_never_touched(
    tmp_path: Path, site_root: Path, database_url: str
) -> None:
    migrate(tmp_path, database_url)
    apis = [
        process(tmp_path, f"api{i}", "serve", database_url, SKR_RUN_WORKERS="false",
                SKR_REDIS_URL=REDIS_URL)
        for i in (1, 2)
    ]  # fmt: skip
    worker = process(tmp_path, "worker", "worker", database_url, SKR_REDIS_URL=REDIS_URL)
    with static_site(site_root, delay_seconds=1.0) as (base, _):
        for p in [*apis, worker]:
            p.start()
        try:
            first, second = apis
            accepted = httpx.post(f"{first.url}/v1/ingest", json={"url": f"{base}/blueprints.html"})
            statuses = job_event_statuses(second.url, accepted.json()["job_id"])
        finally:
            for p in [*apis, worker]:
                p.stop()
    assert statuses[-1] == "succeeded"
    order = ["queued", "running", "succeeded"]
    assert [order.index(s) for s in statuses] == sorted(order.index(s) for s in statuses)


def test_redis_down_still_serves(tmp_path: Path, site_root: Path, database_url: str) -> None:
    migrate(tmp_path, database_url)
    closed = f"redis://127.0.0.1:{free_port()}/0"
    api = process(tmp_path, "api", "serve", database_url, SKR_REDIS_URL=closed)
    with static_site(site_root) as (base, _):
        api.start()
        try:
            job = httpx.post(f"{api.url}/v1/ingest", json={"url": f"{base}/blueprints.html"})
            # no events through a dead Redis: the stream re-reads the job on its timer
            assert job_event_statuses(api.url, job.json()["job_id"])[-1] == "succeeded"
            assert wait_for_job(api.url, job.json()["job_id"])["status"] == "succeeded"
            for _ in range(3):
                search = httpx.get(f"{api.url}/v1/search", params={"q": "blueprint"})
                assert search.status_code == 200 and search.json()["hits"]
                ask = httpx.post(f"{api.url}/v1/ask", json={"question": "What is a blueprint?"})
                assert ask.status_code == 200
            ready = httpx.get(f"{api.url}/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "degraded"
            assert ready.json()["checks"]["redis"].startswith("degraded")
            metrics = httpx.get(f"{api.url}/metrics").text
            assert 'skr_dependency_up{dependency="redis"} 0.0' in metrics
            assert 'skr_dependency_up{dependency="store"} 1.0' in metrics
        finally:
            api.stop()


def test_postgres_down_fails_fast_and_recovers(
    tmp_path: Path, site_root: Path, database_url: str
) -> None:
    migrate(tmp_path, database_url)
    with TcpProxy(5432) as proxy:
        proxied = database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        api = process(
            tmp_path, "api", "serve", proxied, SKR_DB_POOL_TIMEOUT_SECONDS="1",
            SKR_READINESS_CACHE_SECONDS="0.5",
        )  # fmt: skip
        api.start()
        try:
            assert httpx.get(f"{api.url}/v1/search", params={"q": "x"}).status_code == 200
            proxy.cut()
            time.sleep(1)
            assert httpx.get(f"{api.url}/livez").status_code == 200
            assert httpx.get(f"{api.url}/readyz", timeout=10).status_code == 503
            # a search answered before is still answered from the cache (the collection
            # is remembered, the results are in Redis); a new one needs the database
            assert httpx.get(f"{api.url}/v1/search", params={"q": "x"}).status_code == 200
            started = time.monotonic()
            down = httpx.get(f"{api.url}/v1/search", params={"q": "y"}, timeout=10)
            assert down.status_code == 503
            assert down.headers["content-type"].startswith("application/problem+json")
            assert "retry-after" in down.headers
            assert time.monotonic() - started < 3
            proxy.restore()
            deadline = time.monotonic() + 30
            while httpx.get(f"{api.url}/readyz", timeout=10).status_code != 200:
                assert time.monotonic() < deadline, "did not recover"
                time.sleep(0.5)
            assert httpx.get(f"{api.url}/v1/search", params={"q": "x"}).status_code == 200
        finally:
            api.stop()


def test_starts_while_postgres_is_down_and_becomes_ready(tmp_path: Path, database_url: str) -> None:
    migrate(tmp_path, database_url)
    with TcpProxy(5432) as proxy:
        proxy.cut()
        proxied = database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        api = process(
            tmp_path, "api", "serve", proxied, SKR_DB_POOL_TIMEOUT_SECONDS="1",
            SKR_READINESS_CACHE_SECONDS="0.5",
        )  # fmt: skip
        api.start(wait_ready=False)
        try:
            assert httpx.get(f"{api.url}/livez").status_code == 200
            assert httpx.get(f"{api.url}/readyz", timeout=10).status_code == 503
            proxy.restore()
            deadline = time.monotonic() + 30
            while httpx.get(f"{api.url}/readyz", timeout=10).status_code != 200:
                assert time.monotonic() < deadline, "did not become ready"
                time.sleep(0.5)
            search = httpx.get(f"{api.url}/v1/search", params={"q": "anything"})
            assert search.status_code == 200
        finally:
            api.stop()
