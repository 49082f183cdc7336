"""Short, bounded versions of the load scenarios (the full runs are `make load`):
a spike far over capacity is shed with 503 + Retry-After and latency comes back; and
faults under steady load (Redis, PostgreSQL, a worker, the LLM) cost no 500, lose no
job and index every page exactly once."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.e2e.servers import SHARED_SITE, SkrServer, free_port, static_site, write_fallback_site
from tests.e2e.tcp_proxy import TcpProxy
from tests.e2e.test_end_to_end import wait_for_job
from tests.e2e.test_scale_out import MULTI_PROCESS_PAGES, database_url, migrate, process
from tests.fakes.fake_llm_server import FakeLLMServer

pytestmark = pytest.mark.slow

__all__ = ["database_url"]  # the fixture, imported for this module's tests

QUERIES = ["blueprint", "template", "configuration", "request", "application", "views"]


@pytest.fixture(scope="module")
def site_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if SHARED_SITE.is_dir():
        return SHARED_SITE
    return write_fallback_site(tmp_path_factory.mktemp("site"))


@dataclass
class Load:
    """Clients hammering (or pacing) the API from threads, each outcome recorded."""

    base: str
    outcomes: list[tuple[float, str, int, float, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, clients: int, pause: float, ask: bool = False) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._client, args=(i, pause, ask), daemon=True)
            for i in range(clients)
        ]
        for thread in threads:
            thread.start()
        return threads

    def _client(self, number: int, pause: float, ask: bool) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                query = f"{QUERIES[(number + n) % len(QUERIES)]} {number} {n}"  # uncached
                started = time.monotonic()
                if ask and n % 2 == 0:
                    answer = client.post("/v1/ask", json={"question": f"What is a {query}?"})
                    endpoint = "ask"
                else:
                    answer = client.get("/v1/search", params={"q": query})
                    endpoint = "search"
                elapsed = time.monotonic() - started
                retry_after = answer.status_code != 503 or "retry-after" in answer.headers
                self.outcomes.append((started, endpoint, answer.status_code, elapsed, retry_after))
                if pause:
                    time.sleep(pause)

    def between(self, start: float, end: float) -> list[tuple[float, str, int, float, bool]]:
        return [o for o in list(self.outcomes) if start <= o[0] < end]


def search_latency(base: str, rounds: int) -> list[float]:
    samples = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(rounds):
            started = time.monotonic()
            assert (
                client.get("/v1/search", params={"q": f"blueprint baseline {i}"}).status_code == 200
            )
            samples.append(time.monotonic() - started)
    return samples


def test_a_spike_is_shed_with_503_and_latency_comes_back(tmp_path: Path, site_root: Path) -> None:
    server = SkrServer(
        tmp_path / "data", free_port(), tmp_path / "server.log",
        SKR_ADMISSION_SEARCH_CONCURRENCY="2", SKR_ADMISSION_SEARCH_QUEUE="4",
        SKR_ADMISSION_WAIT_SECONDS="0.2", SKR_ADMISSION_UNREADY_SHEDS="5",
        SKR_CACHE_MAX_ENTRIES="0",
    )  # fmt: skip
    with static_site(site_root) as (site, _):
        server.start()
        try:
            for page in MULTI_PROCESS_PAGES[:3]:
                job = httpx.post(f"{server.url}/v1/ingest", json={"url": f"{site}/{page}"})
                assert wait_for_job(server.url, job.json()["job_id"])["status"] == "succeeded"
            baseline = statistics.median(search_latency(server.url, 20))
            load = Load(server.url)
            spike_start = time.monotonic()
            threads = load.run(clients=40, pause=0.0)
            unready = False
            try:
                for _ in range(8):  # 4 s of spike; health stays answerable
                    time.sleep(0.5)
                    assert httpx.get(f"{server.url}/livez", timeout=5).status_code == 200
                    unready |= httpx.get(f"{server.url}/readyz", timeout=5).status_code == 503
            finally:
                load.stop.set()
                for thread in threads:
                    thread.join(30)
            spike_end = time.monotonic()
            during = load.between(spike_start, spike_end)
            statuses = {status for _, _, status, _, _ in during}
            assert statuses <= {200, 503}, f"unexpected statuses {statuses}"
            shed = [o for o in during if o[2] == 503]
            served = [o for o in during if o[2] == 200]
            assert shed and served
            assert all(retry for *_, retry in shed), "a 503 without Retry-After"
            assert unready, "/readyz never said the process was shedding hard"
            recovered_at = None
            deadline = spike_end + 10
            while time.monotonic() < deadline:
                if statistics.median(search_latency(server.url, 5)) <= 2 * baseline + 0.005:
                    recovered_at = time.monotonic()
                    break
                time.sleep(0.2)
            assert recovered_at is not None, "latency did not come back within 10 s"
            ready_deadline = time.monotonic() + 10
            while httpx.get(f"{server.url}/readyz", timeout=5).status_code != 200:
                assert time.monotonic() < ready_deadline, "/readyz did not come back"
                time.sleep(0.2)
        finally:
            server.stop()


@dataclass
class Phase:
    name: str
    start: float
    end: float = 0.0


def test_faults_under_steady_load_lose_nothing(
    tmp_path: Path, site_root: Path, database_url: str
) -> None:
    migrate(tmp_path, database_url)
    pages = [p for p in MULTI_PROCESS_PAGES if (site_root / p).is_file()][:8]
    assert len(pages) >= 4
    with (
        TcpProxy(5432) as pg, TcpProxy(6379) as redis, FakeLLMServer() as llm,
        static_site(site_root) as (site, _),
    ):  # fmt: skip
        db = database_url.replace("127.0.0.1:5432", f"127.0.0.1:{pg.port}")
        common = {
            "SKR_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
            "SKR_DB_POOL_TIMEOUT_SECONDS": "1", "SKR_READINESS_CACHE_SECONDS": "0.5",
            "SKR_OCR_ENABLED": "false",
        }  # fmt: skip
        api = process(
            tmp_path, "api", "serve", db, SKR_RUN_WORKERS="false",
            SKR_LLM_BASE_URL=llm.base_url, SKR_LLM_TIMEOUT_SECONDS="0.5",
            SKR_LLM_MAX_RETRIES="0", SKR_LLM_BREAKER_FAILURES="3",
            SKR_LLM_BREAKER_RESET_SECONDS="1", **common,
        )  # fmt: skip
        workers = [process(tmp_path, f"worker{i}", "worker", db, **common) for i in (1, 2)]
        api.start()
        workers[0].start()
        load = Load(api.url)
        threads = load.run(clients=3, pause=0.05, ask=True)
        phases: list[Phase] = []
        jobs: list[str] = []

        def submit(page: str) -> None:
            answer = httpx.post(f"{api.url}/v1/ingest", json={"url": f"{site}/{page}"}, timeout=10)
            assert answer.status_code == 202, answer.text
            jobs.append(answer.json()["job_id"])

        def fault(name: str, begin: Callable[[], None], end: Callable[[], None]) -> None:
            phase = Phase(name, time.monotonic())
            begin()
            time.sleep(2)
            end()
            phase.end = time.monotonic()
            phases.append(phase)
            time.sleep(3)  # recovery, under the same load, before the next fault

        def llm_mode(mode: str, delay: float = 0.0) -> Callable[[], None]:
            def switch() -> None:
                llm.mode, llm.delay_seconds = mode, delay  # type: ignore[assignment]

            return switch

        try:
            for page in pages[: len(pages) // 2]:
                submit(page)
            time.sleep(2)
            fault("redis stopped", redis.cut, redis.restore)
            fault("postgres restarted", pg.cut, pg.restore)
            fault("worker killed", workers[0].kill, workers[1].start)
            fault("llm failing", llm_mode("fail"), llm_mode("ok"))
            fault("llm slow", llm_mode("slow", 2.0), llm_mode("ok"))
            for page in pages[len(pages) // 2 :]:
                submit(page)
            finished = [wait_for_job(api.url, j, timeout=120) for j in jobs]
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(30)
            for p in [api, *workers]:
                p.stop()
    assert [f["status"] for f in finished] == ["succeeded"] * len(pages), finished
    statuses = {status for _, _, status, _, _ in load.outcomes}
    assert statuses <= {200, 503}, f"a fault caused {statuses - {200, 503}}"
    for phase in phases:
        after = load.between(phase.end, phase.end + 2.5)
        assert any(o[2] == 200 for o in after), f"no recovery after {phase.name}"
        late = [o for o in after if o[0] > phase.end + 1.5]  # all answered by end + 3 s
        failing = [(round(o[0] - phase.end, 2), o[1], o[2]) for o in late if o[2] != 200]
        assert not failing, f"still failing 1.5 s after {phase.name}: {failing}"
    with psycopg.connect(database_url) as conn:
        docs = conn.execute("SELECT count(*), count(DISTINCT url) FROM documents").fetchone()
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT document_id, ordinal FROM chunks "
            "GROUP BY document_id, ordinal HAVING count(*) > 1) d"
        ).fetchone()
        job_rows = conn.execute("SELECT count(*) FROM jobs").fetchone()
    assert docs == (len(pages), len(pages))
    assert duplicates == (0,)
    assert job_rows == (len(pages),)
