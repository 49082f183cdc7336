"""SKR end to end: a real `skr serve` ingests a real site served on 127.0.0.1, then
search and ask find and cite the right page, over HTTP and through the CLI."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import SHARED_SITE, SkrServer, free_port, static_site, write_fallback_site
from tests.fakes.fake_llm_server import FakeLLMServer

pytestmark = pytest.mark.slow

PAGES = ["blueprints.html", "templating.html", "config.html"]


@pytest.fixture(scope="module")
def site_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if SHARED_SITE.is_dir():
        return SHARED_SITE
    return write_fallback_site(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def site(site_root: Path) -> Iterator[str]:
    with static_site(site_root) as (base, _):
        yield base


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SkrServer]:
    root = tmp_path_factory.mktemp("skr")
    skr = SkrServer(root / "data", free_port(), root / "server.log")
    skr.start()
    try:
        yield skr
    finally:
        skr.stop()


def wait_for_job(base: str, job_id: str, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    seen = set()
    while time.monotonic() < deadline:
        job = httpx.get(f"{base}/v1/jobs/{job_id}", timeout=10).json()
        seen.add(job["status"])
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            job["seen"] = sorted(seen)
            return job  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


@pytest.fixture(scope="module")
def ingested(server: SkrServer, site: str) -> list[dict[str, object]]:
    jobs = []
    for page in PAGES:
        response = httpx.post(f"{server.url}/v1/ingest", json={"url": f"{site}/{page}"})
        assert response.status_code == 202, response.text
        jobs.append(response.json()["job_id"])
    return [wait_for_job(server.url, j) for j in jobs]


def test_ingest_jobs_succeed(ingested: list[dict[str, object]]) -> None:
    for job in ingested:
        assert job["status"] == "succeeded", job
        assert job["counters"]["indexed"] == 1  # type: ignore[index]


def test_search_finds_the_page_that_explains_a_concept(
    server: SkrServer, site: str, ingested: object
) -> None:
    hits = httpx.get(f"{server.url}/v1/search", params={"q": "register a blueprint"}).json()["hits"]
    assert hits[0]["url"] == f"{site}/blueprints.html"
    hits = httpx.get(f"{server.url}/v1/search", params={"q": "Jinja template rendering"}).json()[
        "hits"
    ]
    assert hits[0]["url"] == f"{site}/templating.html"
    assert len({h["id"] for h in hits}) == len(hits)


def test_ask_cites_the_page_with_a_verbatim_quote(
    server: SkrServer, site: str, ingested: object
) -> None:
    answer = httpx.post(
        f"{server.url}/v1/ask", json={"question": "How do I register a blueprint?"}
    ).json()
    assert answer["mode"] == "extractive" and answer["degraded"] is False
    cited = {c["url"] for c in answer["citations"]}
    assert f"{site}/blueprints.html" in cited
    for citation in answer["citations"]:
        assert f"[{citation['n']}]" in answer["answer"]
        chunk = httpx.get(f"{server.url}/v1/chunks/{citation['chunk_id']}").json()
        assert citation["quote"] in chunk["text"]


def test_reingesting_an_unchanged_page_stores_nothing(
    server: SkrServer, site: str, ingested: object
) -> None:
    before = httpx.get(f"{server.url}/v1/documents").json()["documents"]
    job_id = httpx.post(f"{server.url}/v1/ingest", json={"url": f"{site}/blueprints.html"}).json()[
        "job_id"
    ]
    job = wait_for_job(server.url, job_id)
    assert job["counters"]["unchanged"] == 1  # type: ignore[index]
    after = httpx.get(f"{server.url}/v1/documents").json()["documents"]
    assert [d["id"] for d in after] == [d["id"] for d in before]
    assert [d["content_hash"] for d in after] == [d["content_hash"] for d in before]


def test_cli_ingest_search_ask_jobs(server: SkrServer, site: str, ingested: object) -> None:
    result = server.cli("ingest", f"{site}/config.html", "--wait")
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout
    result = server.cli("search", "register a blueprint")
    assert result.returncode == 0 and f"{site}/blueprints.html" in result.stdout
    result = server.cli("ask", "How do I register a blueprint?")
    assert result.returncode == 0 and "[1]" in result.stdout
    result = server.cli("jobs")
    assert result.returncode == 0 and "succeeded" in result.stdout
    failed = server.cli("ingest", "ftp://example.invalid/x")
    assert failed.returncode == 1 and "http" in failed.stderr and "Traceback" not in failed.stderr


def test_embedded_refuses_several_api_processes(tmp_path: Path) -> None:
    result = SkrServer(tmp_path, free_port(), tmp_path / "log", SKR_API_WORKERS="2").cli("serve")
    assert result.returncode == 1
    assert "SKR_DATABASE_URL" in result.stderr and "Traceback" not in result.stderr


def test_cli_says_when_no_server_runs(tmp_path: Path) -> None:
    nobody = SkrServer(tmp_path, free_port(), tmp_path / "log")
    result = nobody.cli("search", "anything")
    assert result.returncode == 1
    assert "no SKR server answers" in result.stderr and "Traceback" not in result.stderr


def test_loopback_is_refused_without_the_setting(tmp_path: Path, site_root: Path) -> None:
    """With SKR_ALLOW_PRIVATE_NETWORKS off, a URL on 127.0.0.1 is refused and the server
    behind it sees no request at all."""
    with static_site(site_root) as (base, handler):
        requests: list[str] = []
        original = handler.do_GET

        def counting(self: object) -> None:
            requests.append("GET")
            original(self)  # type: ignore[arg-type]

        handler.do_GET = counting  # type: ignore[method-assign]
        skr = SkrServer(
            tmp_path / "data", free_port(), tmp_path / "log", SKR_ALLOW_PRIVATE_NETWORKS="false"
        )
        skr.start()
        try:
            response = httpx.post(f"{skr.url}/v1/ingest", json={"url": f"{base}/blueprints.html"})
            assert response.status_code == 422
            assert "loopback" in response.json()["detail"]
        finally:
            skr.stop()
        assert requests == []


def test_restart_during_ingest_completes_the_job_without_duplicates(
    tmp_path: Path, site_root: Path
) -> None:
    with static_site(site_root, delay_seconds=30) as (base, handler):
        skr = SkrServer(
            tmp_path / "data", free_port(), tmp_path / "server.log",
            SKR_JOB_LEASE_SECONDS="2", SKR_JOB_POLL_SECONDS="0.1",
        )  # fmt: skip
        skr.start()
        job_id = httpx.post(f"{skr.url}/v1/ingest", json={"url": f"{base}/blueprints.html"}).json()[
            "job_id"
        ]
        deadline = time.monotonic() + 10
        while httpx.get(f"{skr.url}/v1/jobs/{job_id}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        skr.kill()  # SIGKILL while the page is being fetched
        handler.delay_seconds = 0
        skr.start()
        try:
            job = wait_for_job(skr.url, job_id, timeout=30)
            assert job["status"] == "succeeded", job
            assert job["attempts"] == 2
            [doc] = httpx.get(f"{skr.url}/v1/documents").json()["documents"]
        finally:
            skr.stop()
    with sqlite3.connect(tmp_path / "data" / "skr.sqlite3") as conn:
        (chunks,) = conn.execute("SELECT count(*) FROM chunks").fetchone()
        (distinct,) = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT document_id, ordinal FROM chunks)"
        ).fetchone()
        (fts,) = conn.execute("SELECT count(*) FROM chunks_fts").fetchone()
    assert chunks == distinct == fts == doc["chunk_count"] + doc["image_count"]


def test_llm_answers_and_degrades_to_extractive(tmp_path: Path, site_root: Path) -> None:
    """With SKR_LLM_BASE_URL set, the model writes the answer; when it fails or is slow,
    the extractive answer comes back marked degraded, never an error."""
    with FakeLLMServer() as llm, static_site(site_root) as (base, _):
        skr = SkrServer(
            tmp_path / "data", free_port(), tmp_path / "log",
            SKR_LLM_BASE_URL=llm.base_url, SKR_LLM_TIMEOUT_SECONDS="1",
            SKR_LLM_MAX_RETRIES="1", SKR_LLM_BREAKER_FAILURES="2",
        )  # fmt: skip
        skr.start()
        try:
            job_id = httpx.post(
                f"{skr.url}/v1/ingest", json={"url": f"{base}/blueprints.html"}
            ).json()["job_id"]
            assert wait_for_job(skr.url, job_id)["status"] == "succeeded"
            question = {"question": "How do I register a blueprint?"}
            answer = httpx.post(f"{skr.url}/v1/ask", json=question, timeout=30).json()
            assert answer["mode"] == "llm" and answer["degraded"] is False
            assert answer["citations"][0]["url"] == f"{base}/blueprints.html"
            for mode in ("fail", "slow"):
                llm.mode, llm.delay_seconds = mode, 5.0
                started = time.monotonic()
                degraded = httpx.post(f"{skr.url}/v1/ask", json=question, timeout=30)
                assert degraded.status_code == 200
                assert degraded.json()["mode"] == "extractive"
                assert degraded.json()["degraded"] is True
                assert degraded.json()["citations"]
                assert time.monotonic() - started < 6
            # the circuit is open now: the model is not even asked
            before = llm.request_count
            assert httpx.post(f"{skr.url}/v1/ask", json=question).json()["degraded"] is True
            assert llm.request_count == before
            metrics = httpx.get(f"{skr.url}/metrics").text
            assert 'skr_answers_total{degraded="true",mode="extractive"}' in metrics
            # the metrics of issue 8, from the real container's wiring
            assert 'skr_llm_breaker_state{state="open"} 1.0' in metrics
            assert 'skr_llm_breaker_state{state="closed"} 0.0' in metrics
            assert 'skr_cache_lookups_total{cache="qe",result="miss"}' in metrics
            assert 'skr_cache_lookups_total{cache="s",result="hit"}' in metrics
            assert "skr_job_queue_oldest_age_seconds 0.0" in metrics
            embed_calls = re.search(
                r"^skr_embed_batch_duration_seconds_count (\S+)$", metrics, re.M
            )
            assert embed_calls is not None and float(embed_calls.group(1)) >= 2
        finally:
            skr.stop()
