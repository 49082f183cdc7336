"""Site crawls: a job that walks a site from a start URL and its sitemaps, politely,
page by page through a durable frontier, and keeps the index in step with the site."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

import anyio

from skr.domain.errors import (
    BlockedURLError,
    DependencyError,
    FetchError,
    InvalidInputError,
    NotFoundError,
    SKRError,
)
from skr.domain.models import (
    Document,
    Job,
    JobCounters,
    JobError,
    JobStatus,
)
from skr.ports.crawl_frontier import CrawlFrontier, FrontierEntry, FrontierItem, FrontierState
from skr.ports.store import Store
from skr.services.crawl.boilerplate import SiteBoilerplate
from skr.services.crawl.polite_fetcher import PoliteFetcher, host_key
from skr.services.crawl.robots_policy import RobotsPolicy
from skr.services.crawl.sitemaps import MAX_SITEMAP_BYTES, parse_sitemap
from skr.services.crawl.url_normalization import normalize_url, pick_canonical, same_site
from skr.services.ingest import FetchedContent, IngestService, PageOutcome, PageOutcomeKind

logger = logging.getLogger(__name__)

MAX_JOB_ERRORS = 200
_ANY = frozenset({"*/*"})
_NOT_PAGES = (
    ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".bmp", ".tif", ".tiff",
    ".css", ".js", ".json", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".tar",
    ".mp3", ".mp4", ".webm", ".avi", ".mov", ".woff", ".woff2", ".ttf", ".eot", ".exe",
    ".dmg", ".iso", ".apk", ".txt", ".xml", ".csv",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CrawlOptions:
    """What one crawl covers (``POST /v1/ingest``'s ``crawl`` object)."""

    max_depth: int = 3
    max_pages: int = 200
    same_host: bool = True
    prefix: str | None = None
    sitemap: bool = True

    @classmethod
    def from_job(cls, options: dict[str, object]) -> CrawlOptions:
        defaults = cls()
        crawl = options.get("crawl")
        if not isinstance(crawl, dict):
            return defaults
        prefix = crawl.get("prefix")
        return cls(
            max_depth=int(crawl.get("max_depth", defaults.max_depth)),
            max_pages=int(crawl.get("max_pages", defaults.max_pages)),
            same_host=bool(crawl.get("same_host", defaults.same_host)),
            prefix=str(prefix) if prefix else None,
            sitemap=bool(crawl.get("sitemap", defaults.sitemap)),
        )


@dataclass(frozen=True, slots=True)
class CrawlSettings:
    """How hard one crawl job works: pages in flight, URL leases, retries of one URL."""

    concurrency: int = 4
    lease_seconds: float = 120.0
    max_attempts: int = 3
    retry_base_seconds: float = 2.0
    retry_cap_seconds: float = 120.0
    max_sitemaps: int = 50
    progress_every_seconds: float = 0.5


@dataclass(slots=True)
class _Run:
    """One worker's run of a crawl job: the parts that live only in memory."""

    job: Job
    owner: str
    root: str
    options: CrawlOptions
    robots: dict[str, RobotsPolicy] = field(default_factory=dict)
    robots_locks: dict[str, anyio.Lock] = field(default_factory=dict)
    blocked_hosts: dict[str, str] = field(default_factory=dict)  # host -> the guard's refusal
    boilerplate: SiteBoilerplate = field(default_factory=SiteBoilerplate)
    in_flight: set[str] = field(default_factory=set)
    progress: anyio.Event = field(default_factory=anyio.Event)  # set when a page ends
    last_report: float = 0.0


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
        self._ingest = ingest
        self._fetcher = fetcher
        self._store = store
        self._user_agent = user_agent
        self._settings = settings or CrawlSettings()
        self._on_page = on_page

    async def run(
        self, job: Job, owner: str, report: Callable[[Job], Awaitable[None]]
    ) -> tuple[JobStatus, str | None]:
        """Crawl until the frontier is done; the caller cancels the run on pause or cancel
        (the URLs it held go back to the frontier). ``report`` hears the job's progress."""
        try:
            root = normalize_url(job.url)
        except InvalidInputError as exc:
            return JobStatus.FAILED, exc.detail
        run = _Run(job=job, owner=owner, root=root, options=CrawlOptions.from_job(job.options))
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

    async def _hand_back(self, run: _Run) -> None:
        try:
            await self._frontier.release(run.job.id, run.owner)
        except SKRError as exc:
            logger.warning("crawl %s: leased URLs left to expire: %s", run.job.id, exc.detail)

    # -- start: seeds, sitemaps, and what an earlier run left ---------------------------

    async def _start(self, run: _Run) -> None:
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

    async def _add_sitemap_pages(self, run: _Run) -> None:
        policy = await self._robots(run, run.root)
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
                    sitemap_url, accept=_ANY, max_bytes=MAX_SITEMAP_BYTES
                )
                document = await anyio.to_thread.run_sync(parse_sitemap, fetched.body)
            except FetchError as exc:
                if not exc.gone:
                    self._note_error(run, sitemap_url, f"sitemap not read: {exc.detail}")
                continue
            queue.extend(s.loc for s in document.sitemaps)
            entries = [
                FrontierEntry(url, 0, page.lastmod)
                for page in document.urls
                if (url := self._in_scope(run, page.loc)) is not None
            ]
            await self._frontier.add(run.job.id, entries, run.options.max_pages)

    # -- the loop ------------------------------------------------------------------------

    async def _work(self, run: _Run, report: Callable[[Job], Awaitable[None]]) -> None:
        try:
            await self._work_pages(run, report)
        except* DependencyError as out_of_reach:
            # a store or the frontier out of reach, in any page: raised as itself (a task
            # group wraps what its tasks raise), so the job is retried after a backoff
            raise _first_leaf(out_of_reach) from None

    async def _work_pages(self, run: _Run, report: Callable[[Job], Awaitable[None]]) -> None:
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
        run: _Run,
        item: FrontierItem,
        limit: anyio.Semaphore,
        report: Callable[[Job], Awaitable[None]],
    ) -> None:
        try:
            await self._crawl_page(run, item)
            await self._report(run, report=report)
        finally:
            run.in_flight.discard(item.url)
            limit.release()
            run.progress.set()

    async def _crawl_page(self, run: _Run, item: FrontierItem) -> None:
        url, job = item.url, run.job
        existing = await self._store.find_document(job.collection_id, url)
        policy = await self._robots(run, url)
        if host_key(url) in run.blocked_hosts:
            await self._finish(run, item, FrontierState.FAILED, run.blocked_hosts[host_key(url)])
            return
        if not policy.allowed(url):
            await self._removed_or(
                run, item, existing, FrontierState.SKIPPED, "disallowed by robots.txt"
            )
            return
        if _unchanged_since(existing, item.lastmod):
            await self._finish(run, item, FrontierState.UNCHANGED)
            return
        try:
            fetched = await self._ingest.fetch_page(url, job.collection_id)
        except FetchError as exc:
            await self._fetch_failed(run, item, existing, exc)
            return
        if isinstance(fetched, PageOutcome):  # 304 Not Modified
            await self._finish(run, item, FrontierState.UNCHANGED)
            return
        elsewhere = await self._stored_elsewhere(run, item, fetched)
        if elsewhere is not None:
            await self._removed_or(run, item, existing, FrontierState.SKIPPED, elsewhere)
            return
        await self._add_links(run, item, fetched)
        content = FetchedContent(fetched.source, run.boilerplate.filter(fetched.page), existing)
        try:
            outcome = await self._ingest.index_page(job.collection_id, content)
        except FetchError as exc:
            await self._fetch_failed(run, item, existing, exc)
            return
        job.counters.chunks_embedded += outcome.embedded
        if self._on_page is not None:
            self._on_page(outcome)
        state = FrontierState.INDEXED
        if outcome.kind is PageOutcomeKind.UNCHANGED:
            state = FrontierState.UNCHANGED
        await self._finish(run, item, state)

    async def _stored_elsewhere(
        self, run: _Run, item: FrontierItem, fetched: FetchedContent
    ) -> str | None:
        """Why this URL's content belongs to another URL (where it redirects to, or its
        canonical), which the crawl then fetches on its own; ``None`` when it is this one's."""
        final = _normalized(fetched.source.final_url)
        if final is not None and final != item.url:
            if self._in_scope(run, final) is None:
                return f"redirects out of the crawl's scope, to {final}"
            await self._frontier.add(
                run.job.id, [FrontierEntry(final, item.depth)], run.options.max_pages
            )
            return f"redirects to {final}"
        canonical = pick_canonical(item.url, fetched.page.canonical)
        if canonical != item.url and self._in_scope(run, canonical) is not None:
            await self._frontier.add(
                run.job.id, [FrontierEntry(canonical, item.depth)], run.options.max_pages
            )
            return f"a copy of its canonical page {canonical}"
        return None

    async def _add_links(self, run: _Run, item: FrontierItem, fetched: FetchedContent) -> None:
        if item.depth >= run.options.max_depth:
            return
        entries = [
            FrontierEntry(url, item.depth + 1)
            for link in fetched.page.links
            if (url := self._in_scope(run, link)) is not None and _may_be_a_page(url)
        ]
        if entries:
            await self._frontier.add(run.job.id, entries, run.options.max_pages)

    async def _fetch_failed(
        self, run: _Run, item: FrontierItem, existing: Document | None, exc: FetchError
    ) -> None:
        if exc.gone:
            await self._removed_or(run, item, existing, FrontierState.FAILED, exc.detail)
            return
        if exc.transient and item.attempts + 1 < self._settings.max_attempts:
            delay = exc.retry_after_seconds or self._backoff(item.attempts)
            await self._frontier.retry_later(
                run.job.id, item.url, run.owner, min(delay, self._settings.retry_cap_seconds),
                exc.detail,
            )  # fmt: skip
            return
        await self._finish(run, item, FrontierState.FAILED, exc.detail)

    async def _removed_or(
        self,
        run: _Run,
        item: FrontierItem,
        existing: Document | None,
        state: FrontierState,
        reason: str,
    ) -> None:
        """A page SKR must not (or can no longer) keep: its stored version is deleted and the
        URL counted as removed; with none stored, it ends in ``state``."""
        if existing is None:
            await self._finish(run, item, state, reason)
            return
        try:
            await self._ingest.remove_document(existing, run.job.tenant)
        except NotFoundError:
            logger.info("crawl %s: %s was already deleted", run.job.id, item.url)
        await self._finish(run, item, FrontierState.REMOVED, reason)

    async def _finish(
        self, run: _Run, item: FrontierItem, state: FrontierState, error: str | None = None
    ) -> None:
        await self._frontier.finish(run.job.id, item.url, run.owner, state, error)
        counters = run.job.counters
        match state:
            case FrontierState.INDEXED:
                counters.indexed += 1
            case FrontierState.UNCHANGED:
                counters.unchanged += 1
            case FrontierState.SKIPPED:
                counters.skipped += 1
            case FrontierState.REMOVED:
                counters.removed += 1
            case FrontierState.FAILED:
                counters.failed += 1
        if state in (FrontierState.INDEXED, FrontierState.UNCHANGED, FrontierState.REMOVED):
            counters.fetched += 1
        if state is FrontierState.FAILED and error is not None:
            self._note_error(run, item.url, error)
            if self._on_page is not None:
                self._on_page(None)

    # -- robots.txt ----------------------------------------------------------------------

    async def _robots(self, run: _Run, url: str) -> RobotsPolicy:
        """The robots.txt rules of ``url``'s host, read once per run (RFC 9309: a 4xx
        answer allows everything; an unreachable robots.txt allows nothing)."""
        host = host_key(url)
        lock = run.robots_locks.setdefault(host, anyio.Lock())
        async with lock:
            if host in run.robots:
                return run.robots[host]
            parts = urlsplit(url)
            robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"
            try:
                fetched = await self._fetcher.fetch(robots_url, accept=_ANY, max_bytes=500_000)
                policy = RobotsPolicy.parse(fetched.body, self._user_agent)
            except BlockedURLError as exc:  # the host itself is refused, not only robots.txt
                run.blocked_hosts[host] = exc.detail
                policy = RobotsPolicy.deny_all()
            except FetchError as exc:
                if exc.status is not None and 400 <= exc.status < 500:
                    policy = RobotsPolicy.allow_all()
                else:
                    self._note_error(
                        run,
                        robots_url,
                        f"robots.txt unreadable, so nothing is fetched: {exc.detail}",
                    )
                    policy = RobotsPolicy.deny_all()
            await self._fetcher.set_crawl_delay(host, policy.crawl_delay())
            run.robots[host] = policy
            return policy

    # -- bookkeeping ---------------------------------------------------------------------

    def _in_scope(self, run: _Run, url: str) -> str | None:
        normalized = _normalized(url)
        if normalized is None:
            return None
        options = run.options
        if not same_site(normalized, run.root, same_host=options.same_host, prefix=options.prefix):
            return None
        return normalized

    def _note_error(self, run: _Run, url: str, reason: str) -> None:
        run.job.errors.append(JobError(url, reason))
        del run.job.errors[:-MAX_JOB_ERRORS]

    def _backoff(self, attempts: int) -> float:
        ceiling = min(
            self._settings.retry_cap_seconds, self._settings.retry_base_seconds * 2**attempts
        )
        return random.uniform(ceiling / 2, ceiling)

    async def _refresh_counters(self, run: _Run) -> None:
        """The counters from the frontier, which knows them across restarts."""
        counts = await self._frontier.counts(run.job.id)
        old = run.job.counters
        run.job.counters = _counters(counts, old.chunks_embedded)

    async def _report(
        self, run: _Run, *, report: Callable[[Job], Awaitable[None]] | None = None,
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

    def _verdict(self, run: _Run) -> tuple[JobStatus, str | None]:
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


def _normalized(url: str) -> str | None:
    try:
        return normalize_url(url)
    except InvalidInputError:
        return None


def _may_be_a_page(url: str) -> bool:
    """Links to images, archives, scripts and the like are not followed."""
    return not urlsplit(url).path.lower().endswith(_NOT_PAGES)


def _unchanged_since(existing: Document | None, lastmod: datetime | None) -> bool:
    """The sitemap says the page has not changed since SKR last fetched it."""
    return existing is not None and lastmod is not None and lastmod <= existing.fetched_at


def _first_leaf(group: BaseExceptionGroup[DependencyError]) -> DependencyError:
    first: DependencyError | BaseExceptionGroup[DependencyError] = group.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first
