"""One URL of a crawl: robots.txt, the fetch, where its content belongs, its links into the
frontier, indexing it, and what becomes of its frontier entry."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlsplit

import anyio

from skr.domain.errors import BlockedURLError, FetchError, NotFoundError
from skr.domain.models import Document
from skr.ports.crawl_frontier import CrawlFrontier, FrontierEntry, FrontierItem, FrontierState
from skr.ports.store import Store
from skr.services.crawl.crawl_run import CrawlRun, CrawlSettings, normalized_or_none
from skr.services.crawl.polite_fetcher import PoliteFetcher, host_key
from skr.services.crawl.robots_policy import RobotsPolicy
from skr.services.crawl.url_normalization import pick_canonical
from skr.services.ingest import FetchedContent, IngestService, PageOutcome, PageOutcomeKind

logger = logging.getLogger(__name__)

ANY_MEDIA_TYPE = frozenset({"*/*"})
_NOT_PAGES = (
    ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".bmp", ".tif", ".tiff",
    ".css", ".js", ".json", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".tar",
    ".mp3", ".mp4", ".webm", ".avi", ".mov", ".woff", ".woff2", ".ttf", ".eot", ".exe",
    ".dmg", ".iso", ".apk", ".txt", ".xml", ".csv",
)  # fmt: skip


class PageCrawler:
    """Crawls one leased URL at a time for a :class:`CrawlRun`; many run at once."""

    def __init__(
        self,
        *,
        frontier: CrawlFrontier,
        ingest: IngestService,
        fetcher: PoliteFetcher,
        store: Store,
        user_agent: str,
        settings: CrawlSettings,
        on_page: Callable[[PageOutcome | None], None] | None = None,
    ) -> None:
        self._frontier = frontier
        self._ingest = ingest
        self._fetcher = fetcher
        self._store = store
        self._user_agent = user_agent
        self._settings = settings
        self._on_page = on_page

    async def crawl_page(self, run: CrawlRun, item: FrontierItem) -> None:
        url, job = item.url, run.job
        existing = await self._store.find_document(job.collection_id, url)
        policy = await self.robots(run, url)
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
        self, run: CrawlRun, item: FrontierItem, fetched: FetchedContent
    ) -> str | None:
        """Why this URL's content belongs to another URL (where it redirects to, or its
        canonical), which the crawl then fetches on its own; ``None`` when it is this one's."""
        final = normalized_or_none(fetched.source.final_url)
        if final is not None and final != item.url:
            if run.in_scope(final) is None:
                return f"redirects out of the crawl's scope, to {final}"
            await self._frontier.add(
                run.job.id, [FrontierEntry(final, item.depth)], run.options.max_pages
            )
            return f"redirects to {final}"
        canonical = pick_canonical(item.url, fetched.page.canonical)
        if canonical != item.url and run.in_scope(canonical) is not None:
            await self._frontier.add(
                run.job.id, [FrontierEntry(canonical, item.depth)], run.options.max_pages
            )
            return f"a copy of its canonical page {canonical}"
        return None

    async def _add_links(self, run: CrawlRun, item: FrontierItem, fetched: FetchedContent) -> None:
        if item.depth >= run.options.max_depth:
            return
        entries = [
            FrontierEntry(url, item.depth + 1)
            for link in fetched.page.links
            if (url := run.in_scope(link)) is not None and _may_be_a_page(url)
        ]
        if entries:
            await self._frontier.add(run.job.id, entries, run.options.max_pages)

    async def _fetch_failed(
        self, run: CrawlRun, item: FrontierItem, existing: Document | None, exc: FetchError
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
        run: CrawlRun,
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
        self, run: CrawlRun, item: FrontierItem, state: FrontierState, error: str | None = None
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
            run.note_error(item.url, error)
            if self._on_page is not None:
                self._on_page(None)

    async def robots(self, run: CrawlRun, url: str) -> RobotsPolicy:
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
                fetched = await self._fetcher.fetch(
                    robots_url, accept=ANY_MEDIA_TYPE, max_bytes=500_000
                )
                policy = RobotsPolicy.parse(fetched.body, self._user_agent)
            except BlockedURLError as exc:  # the host itself is refused, not only robots.txt
                run.blocked_hosts[host] = exc.detail
                policy = RobotsPolicy.deny_all()
            except FetchError as exc:
                if exc.status is not None and 400 <= exc.status < 500:
                    policy = RobotsPolicy.allow_all()
                else:
                    run.note_error(
                        robots_url,
                        f"robots.txt unreadable, so nothing is fetched: {exc.detail}",
                    )
                    policy = RobotsPolicy.deny_all()
            await self._fetcher.set_crawl_delay(host, policy.crawl_delay())
            run.robots[host] = policy
            return policy

    def _backoff(self, attempts: int) -> float:
        ceiling = min(
            self._settings.retry_cap_seconds, self._settings.retry_base_seconds * 2**attempts
        )
        return random.uniform(ceiling / 2, ceiling)


def _may_be_a_page(url: str) -> bool:
    """Links to images, archives, scripts and the like are not followed."""
    return not urlsplit(url).path.lower().endswith(_NOT_PAGES)


def _unchanged_since(existing: Document | None, lastmod: datetime | None) -> bool:
    """The sitemap says the page has not changed since SKR last fetched it."""
    return existing is not None and lastmod is not None and lastmod <= existing.fetched_at
