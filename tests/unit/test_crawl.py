"""Site crawls on fakes: scope, depth, limits, robots, sitemaps, re-crawls, failures,
boilerplate, and a run stopped half-way that the next run continues."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import anyio
import pytest

from skr.adapters.memory.cache import MemoryCache
from skr.adapters.memory.host_limiter import InMemoryHostLimiter
from skr.domain.errors import DependencyError, FetchError
from skr.domain.models import Document, Job, JobKind, JobStatus, PageWrite
from skr.ports.crawl_frontier import FrontierState
from skr.services.crawl.polite_fetcher import PoliteFetcher
from skr.services.crawl.service import CrawlService, CrawlSettings
from skr.services.ingest import IngestService
from tests.fakes.fake_crawl_frontier import InMemoryCrawlFrontier
from tests.fakes.fake_embedder import FakeEmbedder
from tests.fakes.fake_fetcher import DictFetcher
from tests.fakes.fake_job_queue import InMemoryJobQueue
from tests.fakes.fake_store import InMemoryStore

pytestmark = pytest.mark.anyio

SITE = "http://docs.test"
ROBOTS = f"""User-agent: *
Disallow: /private/
Sitemap: {SITE}/sitemap.xml
"""
SITEMAP = f"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>{SITE}/orphan</loc><lastmod>2024-01-01</lastmod></url>
<url><loc>http://elsewhere.test/page</loc></url>
</urlset>"""


def page(title: str, body: str, links: list[str] = (), extra: str = "") -> str:  # type: ignore[assignment]
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return (
        f"<html><head><title>{title}</title>{extra}</head><body><main><h1>{title}</h1>"
        f"<p>{body}</p><p>{title} has a second paragraph about {title.lower()} alone.</p>"
        f"<nav>{anchors}</nav></main></body></html>"
    )


def site() -> dict[str, str]:
    return {
        f"{SITE}/robots.txt": ROBOTS,
        f"{SITE}/sitemap.xml": SITEMAP,
        f"{SITE}/": page(
            "Home",
            "Welcome to the documentation of the test framework.",
            ["/a", "/b", "/private/secret", "http://other.test/x", "/logo.png", "/a#part"],
        ),
        f"{SITE}/a": page("Alpha", "Alpha explains application factories in depth.", ["/c"]),
        f"{SITE}/b": page("Beta", "Beta covers blueprints and their registration.", ["/a"]),
        f"{SITE}/c": page("Gamma", "Gamma is about configuration handling.", ["/d"]),
        f"{SITE}/d": page("Delta", "Delta is too deep to be crawled at depth two."),
        f"{SITE}/orphan": page("Orphan", "Only the sitemap knows about the orphan page."),
        f"{SITE}/private/secret": page("Secret", "Nobody may crawl the secret page."),
    }


@dataclass
class Harness:
    fetcher: DictFetcher
    queue: InMemoryJobQueue
    frontier: InMemoryCrawlFrontier
    store: InMemoryStore
    embedder: FakeEmbedder
    crawl: CrawlService
    reports: list[dict[str, int]] = field(default_factory=list)

    async def start(self, options: dict[str, object], url: str = f"{SITE}/") -> Job:
        collection = await self.store.ensure_collection("default", "default")
        await self.queue.enqueue(JobKind.CRAWL, collection.id, url, {"crawl": options})
        job = await self.queue.lease("worker", 60)
        assert job is not None
        return job

    async def run(self, job: Job) -> tuple[JobStatus, str | None]:
        async def report(j: Job) -> None:
            self.reports.append(j.counters.as_dict())

        status, reason = await self.crawl.run(job, "worker", report)
        await self.queue.finish(job.id, "worker", status, reason)
        return status, reason

    async def crawl_once(self, **options: object) -> Job:
        job = await self.start({"max_depth": 2, "max_pages": 50, **options})
        status, reason = await self.run(job)
        assert status is JobStatus.SUCCEEDED, reason
        return job

    def stored_urls(self) -> set[str]:
        return {d.url for d in self.store.documents.values()}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def harness() -> Harness:
    fetcher = DictFetcher(site())
    queue = InMemoryJobQueue(max_attempts=3)
    frontier = InMemoryCrawlFrontier(queue)
    store, embedder = InMemoryStore(), FakeEmbedder()
    polite = PoliteFetcher(
        fetcher, InMemoryHostLimiter(), interval_seconds=0.0, per_host_concurrency=2,
        max_delay_seconds=5.0,
    )  # fmt: skip
    ingest = IngestService(
        fetcher=polite, store=store, embedder=embedder, cache=MemoryCache(100), max_tokens=64
    )
    crawl = CrawlService(
        frontier=frontier, ingest=ingest, fetcher=polite, store=store, user_agent="SKR/0.1",
        settings=CrawlSettings(
            concurrency=3, lease_seconds=30, retry_base_seconds=0.01, retry_cap_seconds=0.05
        ),
    )  # fmt: skip
    return Harness(fetcher, queue, frontier, store, embedder, crawl)


async def test_a_crawl_follows_links_in_scope_to_its_depth(harness: Harness) -> None:
    job = await harness.crawl_once()
    assert harness.stored_urls() == {f"{SITE}/{p}" for p in ["", "a", "b", "c", "orphan"]}
    pages = [u for u in harness.fetcher.fetched if not u.endswith((".txt", ".xml"))]
    assert len(pages) == len(set(pages)), "a page was fetched twice"
    assert f"{SITE}/private/secret" not in harness.fetcher.fetched  # robots.txt
    assert f"{SITE}/d" not in harness.fetcher.fetched  # depth 3
    assert not any("other.test" in u or "elsewhere" in u for u in harness.fetcher.fetched)
    assert f"{SITE}/logo.png" not in harness.fetcher.fetched
    final = (await harness.queue.get(job.id)).counters
    counters = job.counters
    assert counters.indexed == 5 and counters.skipped == 1 and counters.failed == 0
    assert counters.discovered == 6 and counters.fetched == 5
    assert final.as_dict() == harness.reports[-1]


async def test_max_pages_caps_the_urls_of_a_crawl(harness: Harness) -> None:
    job = await harness.crawl_once(max_pages=3, sitemap=False)
    assert job.counters.discovered == 3
    assert len(harness.stored_urls()) == 3


async def test_a_second_crawl_of_an_unchanged_site_embeds_nothing(harness: Harness) -> None:
    await harness.crawl_once()
    embedded_before = sum(len(b) for b in harness.embedder.batches)
    harness.fetcher.fetched.clear()
    job = await harness.crawl_once()
    assert sum(len(b) for b in harness.embedder.batches) == embedded_before
    assert job.counters.indexed == 0 and job.counters.unchanged == 5
    assert job.counters.chunks_embedded == 0
    # the orphan's sitemap lastmod is older than its fetch: not even asked for again
    assert f"{SITE}/orphan" not in harness.fetcher.fetched


async def test_a_changed_page_re_embeds_only_its_changed_chunks(harness: Harness) -> None:
    await harness.crawl_once()
    old = site()[f"{SITE}/a"]
    harness.fetcher.pages[f"{SITE}/a"] = old.replace(
        "Alpha explains application factories in depth.",
        "Alpha now explains application factories and testing in depth.",
    )
    harness.embedder.batches.clear()
    job = await harness.crawl_once()
    assert job.counters.indexed == 1 and job.counters.unchanged == 4
    embedded = [t for batch in harness.embedder.batches for t in batch]
    assert embedded and all("Alpha" in t for t in embedded)
    assert job.counters.chunks_embedded == len(embedded)
    chunks = [c for c, _ in harness.store.chunks.values() if c.url == f"{SITE}/a"]
    assert any("testing in depth" in c.text for c in chunks)
    assert len(embedded) < len(chunks) or len(chunks) == 1


async def test_a_page_gone_from_the_site_is_removed_from_the_index(harness: Harness) -> None:
    await harness.crawl_once()
    del harness.fetcher.pages[f"{SITE}/b"]
    job = await harness.crawl_once()
    assert f"{SITE}/b" not in harness.stored_urls()
    assert job.counters.removed == 1
    assert not [c for c, _ in harness.store.chunks.values() if c.url == f"{SITE}/b"]


async def test_transient_failures_are_retried_and_lasting_ones_recorded(harness: Harness) -> None:
    busy = FetchError(
        "the server answered 503", status=503, transient=True, retry_after_seconds=0.01
    )
    harness.fetcher.failures[f"{SITE}/a"] = [busy]
    harness.fetcher.failures[f"{SITE}/b"] = [FetchError("the server answered 500", status=500)]
    job = await harness.crawl_once()
    assert f"{SITE}/a" in harness.stored_urls()
    assert harness.fetcher.fetched.count(f"{SITE}/a") == 2
    assert job.counters.failed == 1
    assert [(e.url, e.reason) for e in job.errors] == [(f"{SITE}/b", "the server answered 500")]
    assert f"{SITE}/c" in harness.stored_urls()  # the crawl went on


async def test_redirects_and_canonicals_store_each_page_once(harness: Harness) -> None:
    harness.fetcher.redirects[f"{SITE}/b"] = f"{SITE}/orphan"
    harness.fetcher.pages[f"{SITE}/c"] = page(
        "Gamma",
        "Gamma is about configuration handling.",
        extra=f'<link rel="canonical" href="{SITE}/a">',
    )
    job = await harness.crawl_once(sitemap=False)
    assert harness.stored_urls() == {f"{SITE}/", f"{SITE}/a", f"{SITE}/orphan"}
    assert job.counters.skipped == 3  # robots, the redirect, the copy of a canonical page


async def test_the_crawl_fails_when_no_page_can_be_ingested(harness: Harness) -> None:
    harness.fetcher.pages[f"{SITE}/robots.txt"] = "User-agent: *\nDisallow: /\n"
    job = await harness.start({"max_depth": 2, "max_pages": 50})
    status, reason = await harness.run(job)
    assert status is JobStatus.FAILED
    assert reason is not None and "skipped" in reason


async def test_text_repeated_on_most_pages_is_indexed_only_a_few_times(harness: Harness) -> None:
    footer = "Copyright the test framework team. Sign up for the newsletter today."
    for url, html in list(harness.fetcher.pages.items()):
        harness.fetcher.pages[url] = html.replace("</main>", f"<p>{footer}</p></main>")
    await harness.crawl_once()
    with_footer = {c.url for c, _ in harness.store.chunks.values() if "newsletter" in c.text}
    assert 1 <= len(with_footer) <= 3 < len(harness.stored_urls())


async def test_a_stopped_run_hands_back_its_urls_and_the_next_run_continues(
    harness: Harness,
) -> None:
    job = await harness.start({"max_depth": 2, "max_pages": 50})
    gate = anyio.Event()
    original = harness.fetcher.fetch

    async def slow_fetch(url: str, **kwargs: object) -> object:
        if url == f"{SITE}/c":
            await gate.wait()  # never set: the run is stopped while fetching /c
        return await original(url, **kwargs)  # type: ignore[arg-type]

    harness.fetcher.fetch = slow_fetch  # type: ignore[method-assign]

    async def report(j: Job) -> None:
        pass

    with anyio.move_on_after(2.0):
        await harness.crawl.run(job, "worker", report)
    assert f"{SITE}/c" not in harness.stored_urls()
    leased = [r for r in harness.frontier.rows[job.id].values() if r.lease_owner == "worker"]
    assert not [r for r in leased if r.state.value == "leased"]
    done_before = set(harness.stored_urls())
    harness.fetcher.fetch = original  # type: ignore[method-assign]
    harness.fetcher.fetched.clear()
    status, _ = await harness.crawl.run(job, "worker-2", report)
    assert status is JobStatus.SUCCEEDED
    assert f"{SITE}/c" in harness.stored_urls()
    refetched = done_before & set(harness.fetcher.fetched)
    assert not refetched, f"the second run fetched again {refetched}"
    assert job.counters.indexed == 5


async def test_sitemap_indexes_are_followed_to_their_pages(harness: Harness) -> None:
    pages = harness.fetcher.pages
    pages[f"{SITE}/robots.txt"] = f"User-agent: *\nSitemap: {SITE}/sitemap-index.xml\n"
    pages[f"{SITE}/sitemap-index.xml"] = (
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{SITE}/sitemap-pages.xml</loc></sitemap></sitemapindex>"
    )
    pages[f"{SITE}/sitemap-pages.xml"] = SITEMAP
    del pages[f"{SITE}/sitemap.xml"]
    await harness.crawl_once(max_depth=0)
    assert harness.stored_urls() == {f"{SITE}/", f"{SITE}/orphan"}


async def test_without_a_sitemap_line_the_default_sitemap_is_read(harness: Harness) -> None:
    harness.fetcher.pages[f"{SITE}/robots.txt"] = "User-agent: *\nDisallow:\n"
    await harness.crawl_once(max_depth=0)
    assert harness.stored_urls() == {f"{SITE}/", f"{SITE}/orphan"}
    assert f"{SITE}/sitemap.xml" in harness.fetcher.fetched


async def test_a_page_that_now_redirects_off_the_site_is_removed(harness: Harness) -> None:
    await harness.crawl_once()
    harness.fetcher.redirects[f"{SITE}/b"] = "http://other.test/moved"
    harness.fetcher.pages["http://other.test/moved"] = page("Moved", "Beta moved elsewhere.")
    job = await harness.crawl_once()
    assert f"{SITE}/b" not in harness.stored_urls()
    assert job.counters.removed == 1


async def test_a_store_out_of_reach_mid_crawl_is_raised_as_itself_and_the_next_run_continues(
    harness: Harness,
) -> None:
    # The job worker retries a crawl after a backoff, its frontier kept, when the run
    # raises DependencyError; anything else fails the crawl for good.
    job = await harness.start({"max_depth": 2, "max_pages": 50})
    original = harness.store.write_page

    async def store_down_for_c(page: PageWrite) -> Document:
        if page.url == f"{SITE}/c":
            raise DependencyError("the SQLite store failed: disk I/O error")
        return await original(page)

    harness.store.write_page = store_down_for_c  # type: ignore[method-assign]

    async def report(j: Job) -> None:
        pass

    with pytest.raises(DependencyError, match="disk I/O error"):
        await harness.crawl.run(job, "worker", report)
    assert f"{SITE}/c" not in harness.stored_urls()
    harness.store.write_page = original  # type: ignore[method-assign]
    status, reason = await harness.crawl.run(job, "worker-2", report)
    assert status is JobStatus.SUCCEEDED, reason
    assert f"{SITE}/c" in harness.stored_urls()


async def test_a_run_taking_over_from_a_dead_one_does_not_wait_out_its_url_leases(
    harness: Harness,
) -> None:
    job = await harness.start({"max_depth": 2, "max_pages": 50})

    async def report(j: Job) -> None:
        pass

    gate = anyio.Event()
    original = harness.fetcher.fetch

    async def stuck_on_c(url: str, **kwargs: object) -> object:
        if url == f"{SITE}/c":
            await gate.wait()  # never set
        return await original(url, **kwargs)  # type: ignore[arg-type]

    harness.fetcher.fetch = stuck_on_c  # type: ignore[method-assign]
    with anyio.move_on_after(1.0):
        await harness.crawl.run(job, "dead", report)
    # a process killed mid-page hands nothing back: its lease on /c stands (30 s here)
    rows = harness.frontier.rows[job.id].values()
    for row in rows:
        if row.url == f"{SITE}/c" and row.lease_owner is None:
            row.state, row.lease_owner = FrontierState.LEASED, "dead"
            row.lease_expires_at = time.time() + 30
    harness.fetcher.fetch = original  # type: ignore[method-assign]
    with anyio.fail_after(5):  # not the 30 s lease
        status, reason = await harness.crawl.run(job, "worker-2", report)
    assert status is JobStatus.SUCCEEDED, reason
    assert f"{SITE}/c" in harness.stored_urls()
