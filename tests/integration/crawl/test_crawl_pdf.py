"""PDFs through the real fetcher on loopback: linked from a crawled page, or given
directly; stored page by page, and found and cited with their page number."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from skr.adapters.httpx_fetcher import HttpxFetcher
from skr.domain.models import JobKind, JobStatus
from skr.observability.metrics import Metrics
from skr.services.ask import AskService
from skr.services.crawl.service import CrawlService
from skr.services.ingest import IngestService, PageOutcomeKind
from skr.services.search import SearchService
from skr.settings import CacheSettings, CrawlSection, IngestSettings, Settings
from skr.wiring.container import build_services
from tests.e2e.servers import static_site
from tests.fakes.fake_container import fake_adapters
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
    ask: AskService


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    """Production's own build_services over the real fetcher and in-memory stores."""
    settings = Settings(
        crawl=CrawlSection(concurrency=2, host_concurrency=2, max_delay_seconds=1.0),
        ingest=IngestSettings(chunk_max_tokens=64, extraction_processes=0),
        cache=CacheSettings(ttl_seconds=0),
    )
    async with HttpxFetcher(user_agent="SKR-test", allow_private=True) as fetcher:
        adapters = fake_adapters({}, fetcher=fetcher)
        built = build_services(settings, adapters, Metrics())
        store, queue = adapters.backend.store, adapters.backend.job_queue
        assert isinstance(store, InMemoryStore) and isinstance(queue, InMemoryJobQueue)
        yield Services(store, queue, built.ingest, built.crawl, built.search, built.ask)


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
    answer = await services.ask.ask(collection, "How do I prime the pump?", 3)
    priming = [c for c in answer.citations if c.quote.startswith("Priming the pump")]
    assert priming and priming[0].section == "Page 2"
    assert priming[0].url == f"{site}/manual.pdf"


async def test_a_pdf_url_given_directly_is_ingested(site: str, services: Services) -> None:
    collection = await services.store.ensure_collection("default", "default")
    outcome = await services.ingest.ingest_page(f"{site}/manual.pdf", collection.id)
    assert outcome.kind is PageOutcomeKind.INDEXED
    sections = {c.heading_path for c, _ in services.store.chunks.values()}
    assert sections == {"Page 1", "Page 2", "Page 3"}
