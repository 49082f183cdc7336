"""A crawl through the real fetcher into the hostile site: every bad URL is bounded,
recorded as that URL's error with its reason, and the crawl goes on to its end.

All traffic stays on 127.0.0.1: the site's host name resolves (through an injected
resolver) to an address the loopback-only network backend routes to 127.0.0.1, and the
one private address met (a redirect, and a sitemap entry) must be refused before any
connection, which that backend would turn into a test failure anyway.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from skr.adapters.httpx_fetcher import HttpxFetcher
from skr.adapters.memory.cache import MemoryCache
from skr.adapters.memory.host_limiter import InMemoryHostLimiter
from skr.domain.models import Job, JobKind, JobStatus
from skr.services.crawl.polite_fetcher import PoliteFetcher
from skr.services.crawl.service import CrawlService, CrawlSettings
from skr.services.ingest import IngestService
from tests.e2e.hostile_site import (
    CASES_LINKED,
    SITEMAP_PRIVATE_ENTRY,
    HostileSite,
    hostile_site,
)
from tests.fakes.fake_crawl_frontier import InMemoryCrawlFrontier
from tests.fakes.fake_embedder import FakeEmbedder
from tests.fakes.fake_job_queue import InMemoryJobQueue
from tests.fakes.fake_store import InMemoryStore
from tests.fixtures.network import PUBLIC_IP, FakeResolver, LoopbackOnlyBackend

pytestmark = pytest.mark.anyio

HOST = "hostile.test"
PRIVATE_HOST = "internal.hostile.test"
WORDS = {
    "/missing": "404",
    "/gone": "410",
    "/loop-a": "too many redirects",
    "/loop-b": "too many redirects",
    "/slow-headers": "sent nothing",
    "/trickle": "timed out",
    "/never-ends": "",
    "/gzip-bomb": "larger than",
    "/huge": "larger than",
    "/huge-unannounced": "larger than",
    "/binary.html": "binary",
    "/to-private": "10.0.0.1 is a private address",
    "/too-many": "429",
    "/unavailable": "503",
    "/error": "500",
    "/pdf": "PDF",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def site() -> Iterator[HostileSite]:
    with hostile_site() as running:
        yield running


async def test_a_crawl_of_the_hostile_site_records_every_case_and_finishes(
    site: HostileSite,
) -> None:
    backend = LoopbackOnlyBackend()
    resolver = FakeResolver({HOST: [PUBLIC_IP], PRIVATE_HOST: ["10.0.0.1"]})
    queue = InMemoryJobQueue()
    frontier, store = InMemoryCrawlFrontier(queue), InMemoryStore()
    async with HttpxFetcher(
        user_agent="SKR-test/1.0", connect_timeout=1.0, read_timeout=1.5, total_timeout=2.0,
        max_bytes=1_000_000, max_redirects=5, allow_private=False, resolver=resolver,
        network_backend=backend,
    ) as fetcher:  # fmt: skip
        polite = PoliteFetcher(
            fetcher, InMemoryHostLimiter(), interval_seconds=0.0, per_host_concurrency=8,
            max_delay_seconds=0.3,
        )  # fmt: skip
        ingest = IngestService(
            fetcher=polite, store=store, embedder=FakeEmbedder(), cache=MemoryCache(10),
            max_tokens=64,
        )  # fmt: skip
        crawl = CrawlService(
            frontier=frontier, ingest=ingest, fetcher=polite, store=store, user_agent="SKR",
            settings=CrawlSettings(
                concurrency=8, lease_seconds=30, max_attempts=2, retry_base_seconds=0.05,
                retry_cap_seconds=0.2,
            ),
        )  # fmt: skip
        collection = await store.ensure_collection("default", "default")
        start = f"http://{HOST}:{site.port}/ok.html"
        options = {"crawl": {"max_depth": 1, "max_pages": 100, "same_host": False}}
        await queue.enqueue(JobKind.CRAWL, collection.id, start, options)
        job = await queue.lease("worker", 60)
        assert job is not None
        reports: list[Job] = []

        async def report(j: Job) -> None:
            reports.append(j)

        began = anyio.current_time()
        with anyio.fail_after(60):
            status, reason = await crawl.run(job, "worker", report)
        elapsed = anyio.current_time() - began

    assert status is JobStatus.SUCCEEDED, reason
    assert elapsed < 30
    stored = {d.url for d in store.documents.values()}
    base = f"http://{HOST}:{site.port}"
    assert stored == {f"{base}/ok.html", f"{base}/malformed.html"}
    errors = {e.url: e.reason for e in job.errors}
    for path, words in WORDS.items():
        assert f"{base}{path}" in errors, f"{path} has no error: {errors}"
        assert words in errors[f"{base}{path}"], (path, errors[f"{base}{path}"])
    assert "resolves to 10.0.0.1, a private address" in errors[SITEMAP_PRIVATE_ENTRY]
    assert job.counters.failed == len(WORDS) + 1  # and the sitemap's private entry
    assert job.counters.indexed == 2
    assert "/image.png" not in site.requests  # an image link is not followed as a page
    linked = {f"{base}{path}" for path in CASES_LINKED} - {f"{base}/image.png"}
    assert linked <= set(errors) | stored
    assert all(host in (PUBLIC_IP,) for host, _ in backend.calls), backend.calls
