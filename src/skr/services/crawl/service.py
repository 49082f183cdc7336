"""Site crawls: a job that walks a site from a start URL and its sitemaps, politely,
page by page through a durable frontier, and keeps the index in step with the site."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import anyio

from skr.domain.errors import DependencyError, FetchError, InvalidInputError, SKRError
from skr.domain.models import Job, JobCounters, JobStatus
from skr.ports.crawl_frontier import CrawlFrontier, FrontierEntry, FrontierItem, FrontierState
from skr.ports.store import Store
from skr.services.crawl.crawl_run import MAX_JOB_ERRORS, CrawlOptions, CrawlRun
from skr.services.crawl.crawl_run import CrawlSettings as CrawlSettings  # wiring imports it here
from skr.services.crawl.page_crawler import ANY_MEDIA_TYPE, PageCrawler
from skr.services.crawl.polite_fetcher import PoliteFetcher
from skr.services.crawl.sitemaps import MAX_SITEMAP_BYTES, parse_sitemap
from skr.services.crawl.url_normalization import normalize_url
from skr.services.ingest import IngestService, PageOutcome

logger = logging.getLogger(__name__)


class CrawlService:
    """Runs crawl jobs. One worker holds a crawl job at a time (the job's lease); the URLs
    live in the frontier, so another worker continues where a dead one stopped."""

    def __init__(
        self,
        *,
        frontier: CrawlFrontier,
        ingest: IngestService,
        fetcher: PoliteFetcher,
        store: Store,
        user_agent: str,
        settings: CrawlSettings | None = None,
        on_page: Callable[[PageOutcome | None], None] | None = None,
    ) -> None:
        self._frontier = frontier
        self._fetcher = fetcher
        self._settings = settings or CrawlSettings()
        self._pages = PageCrawler(
            frontier=frontier,
            ingest=ingest,
            fetcher=fetcher,
            store=store,
            user_agent=user_agent,
            settings=self._settings,
            on_page=on_page,
        )

    async def run(
        self, job: Job, owner: str, report: Callable[[Job], Awaitable[None]]
    ) -> tuple[JobStatus, str | None]:
        """Crawl until the frontier is done; the caller cancels the run on pause or cancel
        (the URLs it held go back to the frontier). ``report`` hears the job's progress."""
        try:
            root = normalize_url(job.url)
        except InvalidInputError as exc:
            return JobStatus.FAILED, exc.detail
        run = CrawlRun(job=job, owner=owner, root=root, options=CrawlOptions.from_job(job.options))
        try:
            await self._start(run)
            await self._report(run, report=report, force=True)
            await self._work(run, report)
        finally:
            with anyio.CancelScope(shield=True):
                await self._hand_back(run)
        await self._refresh_counters(run)
        await report(job)
        return self._verdict(run)

    async def _hand_back(self, run: CrawlRun) -> None:
        try:
            await self._frontier.release(run.job.id, run.owner)
        except SKRError as exc:
            logger.warning("crawl %s: leased URLs left to expire: %s", run.job.id, exc.detail)

    # -- start: seeds, sitemaps, and what an earlier run left ---------------------------

    async def _start(self, run: CrawlRun) -> None:
        job, options = run.job, run.options
        counts = await self._frontier.counts(job.id)
        if counts:  # a run of this job before us: continue where it was
            # with this job's lease ours, whoever still holds its URLs runs it no more
            taken = await self._frontier.take_over(job.id, run.owner)
            if taken:
                logger.info("crawl %s: took over %d URLs an earlier run held", job.id, taken)
            run.job.errors = await self._frontier.errors(job.id, MAX_JOB_ERRORS)
            await self._refresh_counters(run)
            return
        previous = await self._frontier.seed_from_previous(
            job.id, job.collection_id, job.url, options.max_pages
        )
        await self._frontier.add(job.id, [FrontierEntry(run.root, 0)], options.max_pages)
        if options.sitemap:
            await self._add_sitemap_pages(run)
        logger.info("crawl %s of %s: %d URLs known from the last crawl", job.id, job.url, previous)

    async def _add_sitemap_pages(self, run: CrawlRun) -> None:
        policy = await self._pages.robots(run, run.root)
        parts = urlsplit(run.root)
        queue = policy.sitemaps() or [f"{parts.scheme}://{parts.netloc}/sitemap.xml"]
        seen: set[str] = set()
        while queue and len(seen) < self._settings.max_sitemaps:
            sitemap_url = queue.pop(0)
            if sitemap_url in seen:
                continue
            seen.add(sitemap_url)
            try:
                fetched = await self._fetcher.fetch(
                    sitemap_url, accept=ANY_MEDIA_TYPE, max_bytes=MAX_SITEMAP_BYTES
                )
                document = await anyio.to_thread.run_sync(parse_sitemap, fetched.body)
            except FetchError as exc:
                if not exc.gone:
                    run.note_error(sitemap_url, f"sitemap not read: {exc.detail}")
                continue
            queue.extend(s.loc for s in document.sitemaps)
            entries = [
                FrontierEntry(url, 0, page.lastmod)
                for page in document.urls
                if (url := run.in_scope(page.loc)) is not None
            ]
            await self._frontier.add(run.job.id, entries, run.options.max_pages)

    # -- the loop ------------------------------------------------------------------------

    async def _work(self, run: CrawlRun, report: Callable[[Job], Awaitable[None]]) -> None:
        try:
            await self._work_pages(run, report)
        except* DependencyError as out_of_reach:
            # a store or the frontier out of reach, in any page: raised as itself (a task
            # group wraps what its tasks raise), so the job is retried after a backoff
            raise _first_leaf(out_of_reach) from None

    async def _work_pages(self, run: CrawlRun, report: Callable[[Job], Awaitable[None]]) -> None:
        limit = anyio.Semaphore(self._settings.concurrency)
        async with anyio.create_task_group() as group:
            while True:
                await limit.acquire()
                run.progress = anyio.Event()  # before leasing: no finish goes unnoticed
                items = await self._frontier.lease(
                    run.job.id, run.owner, self._settings.lease_seconds, 1
                )
                items = [i for i in items if i.url not in run.in_flight]
                if items:
                    run.in_flight.add(items[0].url)
                    group.start_soon(self._page_task, run, items[0], limit, report)
                    continue
                limit.release()
                if not run.in_flight:
                    due = await self._frontier.seconds_until_due(run.job.id)
                    if due is None:
                        return
                    await anyio.sleep(min(max(due, 0.05), 1.0))
                    continue
                with anyio.move_on_after(1.0):  # a page ends, and may have added URLs
                    await run.progress.wait()

    async def _page_task(
        self,
        run: CrawlRun,
        item: FrontierItem,
        limit: anyio.Semaphore,
        report: Callable[[Job], Awaitable[None]],
    ) -> None:
        try:
            await self._pages.crawl_page(run, item)
            await self._report(run, report=report)
        finally:
            run.in_flight.discard(item.url)
            limit.release()
            run.progress.set()

    # -- bookkeeping ---------------------------------------------------------------------

    async def _refresh_counters(self, run: CrawlRun) -> None:
        """The counters from the frontier, which knows them across restarts."""
        counts = await self._frontier.counts(run.job.id)
        old = run.job.counters
        run.job.counters = _counters(counts, old.chunks_embedded)

    async def _report(
        self, run: CrawlRun, *, report: Callable[[Job], Awaitable[None]] | None = None,
        force: bool = False,
    ) -> None:  # fmt: skip
        now = anyio.current_time()
        if report is None or (
            not force and now - run.last_report < self._settings.progress_every_seconds
        ):
            return
        run.last_report = now
        await self._refresh_counters(run)
        await report(run.job)

    def _verdict(self, run: CrawlRun) -> tuple[JobStatus, str | None]:
        counters = run.job.counters
        if counters.indexed + counters.unchanged + counters.removed > 0:
            return JobStatus.SUCCEEDED, None
        if run.job.errors:
            first = run.job.errors[0]
            return JobStatus.FAILED, f"no page could be ingested; {first.url}: {first.reason}"
        if counters.skipped:
            return JobStatus.FAILED, "no page could be ingested; every URL was skipped"
        return JobStatus.FAILED, "no page could be ingested"


def _counters(counts: dict[FrontierState, int], chunks_embedded: int) -> JobCounters:
    def n(state: FrontierState) -> int:
        return counts.get(state, 0)

    return JobCounters(
        discovered=sum(counts.values()),
        fetched=n(FrontierState.INDEXED) + n(FrontierState.UNCHANGED) + n(FrontierState.REMOVED),
        indexed=n(FrontierState.INDEXED),
        unchanged=n(FrontierState.UNCHANGED),
        skipped=n(FrontierState.SKIPPED),
        failed=n(FrontierState.FAILED),
        removed=n(FrontierState.REMOVED),
        chunks_embedded=chunks_embedded,
    )


def _first_leaf(group: BaseExceptionGroup[DependencyError]) -> DependencyError:
    first: DependencyError | BaseExceptionGroup[DependencyError] = group.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first
