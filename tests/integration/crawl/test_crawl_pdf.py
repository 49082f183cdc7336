"""PDFs through the real fetcher on loopback: linked from a crawled page, or given
directly; stored page by page, and found and cited with their page number."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from skr.adapters.httpx_fetcher import HttpxFetcher
from skr.adapters.memory.cache import MemoryCache
from skr.adapters.memory.host_limiter import InMemoryHostLimiter
from skr.domain.models import JobKind, JobStatus
from skr.services.ask import AskService
from skr.services.crawl.polite_fetcher import PoliteFetcher
from skr.services.crawl.service import CrawlService, CrawlSettings
from skr.services.ingest import IngestService, PageOutcomeKind
from skr.services.search import SearchService
from tests.e2e.servers import static_site
from tests.fakes.fake_crawl_frontier import InMemoryCrawlFrontier
from tests.fakes.fake_embedder import FakeEmbedder
from tests.fakes.fake_job_queue import InMemoryJobQueue
from tests.fakes.fake_store import InMemoryStore
from tests.unit.test_pdf_extraction import make_pdf

pytestmark = pytest.mark.anyio

PAGES = [
    ["The pump manual covers installation of the water pump."],
    ["Priming the pump: fill the casing with water before the first start."],
    ["Warranty terms last two years from the date of purchase."],
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "manual.pdf").write_bytes(make_pdf(PAGES, title="Pump Manual"))
    (tmp_path / "index.html").write_text(
        "<html><head><title>Downloads</title></head><body><main><h1>Downloads</h1>"
        "<p>Everything about our pumps, ready to download and read offline.</p>"
        '<p><a href="manual.pdf">The pump manual (PDF)</a></p></main></body></html>'
    )
    with static_site(tmp_path) as (base, _):
        yield base


@dataclass
class Services:
    store: InMemoryStore
    queue: InMemoryJobQueue
    ingest: IngestService
    crawl: CrawlService
    search: SearchService


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    store, queue, embedder = InMemoryStore(), InMemoryJobQueue(), FakeEmbedder()
    cache = MemoryCache(100)
    async with HttpxFetcher(user_agent="SKR-test", allow_private=True) as fetcher:
        polite = PoliteFetcher(
            fetcher, InMemoryHostLimiter(), interval_seconds=0.0, per_host_concurrency=2,
            max_delay_seconds=1.0,
        )  # fmt: skip
        ingest = IngestService(
            fetcher=polite, store=store, embedder=embedder, cache=cache, max_tokens=64
        )
        crawl = CrawlService(
            frontier=InMemoryCrawlFrontier(queue), ingest=ingest, fetcher=polite, store=store,
            user_agent="SKR", settings=CrawlSettings(concurrency=2),
        )  # fmt: skip
        search = SearchService(
            store=store, embedder=embedder, cache=cache, candidates=20, rrf_k=60,
            cache_ttl_seconds=0,
        )  # fmt: skip
        yield Services(store, queue, ingest, crawl, search)


async def test_a_pdf_linked_from_a_crawled_page_is_stored_page_by_page(
    site: str, services: Services
) -> None:
    collection = await services.store.ensure_collection("default", "default")
    options = {"crawl": {"max_depth": 1, "max_pages": 10}}
    await services.queue.enqueue(JobKind.CRAWL, collection.id, f"{site}/index.html", options)
    job = await services.queue.lease("w", 30)
    assert job is not None

    async def report(_: object) -> None:
        pass

    status, reason = await services.crawl.run(job, "w", report)
    assert status is JobStatus.SUCCEEDED, reason
    [pdf] = [d for d in services.store.documents.values() if d.url.endswith(".pdf")]
    assert pdf.title == "Pump Manual"
    hits = await services.search.search(collection, "priming the pump casing", 3, None)
    assert hits[0].url == f"{site}/manual.pdf" and hits[0].section == "Page 2"
    answer = await AskService(search=services.search, generator=None).ask(
        collection, "How do I prime the pump?", 3
    )
    priming = [c for c in answer.citations if c.quote.startswith("Priming the pump")]
    assert priming and priming[0].section == "Page 2"
    assert priming[0].url == f"{site}/manual.pdf"


async def test_a_pdf_url_given_directly_is_ingested(site: str, services: Services) -> None:
    collection = await services.store.ensure_collection("default", "default")
    outcome = await services.ingest.ingest_page(f"{site}/manual.pdf", collection.id)
    assert outcome.kind is PageOutcomeKind.INDEXED
    sections = {c.heading_path for c, _ in services.store.chunks.values()}
    assert sections == {"Page 1", "Page 2", "Page 3"}
