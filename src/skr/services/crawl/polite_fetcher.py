"""A Fetcher that keeps to each host's pace, whoever asks: pages, robots.txt, sitemaps,
images. The pace is shared by every worker through the HostLimiter."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Collection
from urllib.parse import urlsplit

from skr.domain.errors import FetchError
from skr.domain.models import FetchedPage
from skr.ports.fetcher import HTML_MEDIA_TYPES, Fetcher
from skr.ports.host_limiter import HostLimiter

_MAX_REMEMBERED_HOSTS = 10_000


def host_key(url: str) -> str:
    """The host and port a URL's requests go to, as the limiter counts them."""
    return urlsplit(url).netloc.lower()


class PoliteFetcher:
    """Every fetch waits for a per-host slot (at most ``per_host_concurrency`` at once) and
    a turn: starts at least ``interval_seconds`` apart, or the host's robots.txt
    ``Crawl-delay``, or the time the host took to answer lately (so a slow server is
    asked slower, as Scrapy's AutoThrottle does), whichever is longest, capped at
    ``max_delay_seconds``. A 429 or 503 answer holds the host off for its ``Retry-After``
    (``default_hold_seconds`` without one)."""

    def __init__(
        self,
        inner: Fetcher,
        limiter: HostLimiter,
        *,
        interval_seconds: float,
        per_host_concurrency: int,
        max_delay_seconds: float,
        default_hold_seconds: float = 5.0,
        slot_lease_seconds: float = 120.0,
    ) -> None:
        self._inner = inner
        self._limiter = limiter
        self._interval = interval_seconds
        self._concurrency = per_host_concurrency
        self._max_delay = max_delay_seconds
        self._default_hold = default_hold_seconds
        self._slot_lease = slot_lease_seconds
        self._crawl_delays: OrderedDict[str, float] = OrderedDict()
        self._latencies: OrderedDict[str, float] = OrderedDict()  # moving average, seconds

    async def set_crawl_delay(self, host: str, seconds: float | None) -> None:
        """The ``Crawl-delay`` a host's robots.txt asks of SKR (``None``: none). The request
        that read robots.txt counts: the next one waits the delay from now."""
        self._crawl_delays.pop(host, None)
        if seconds is not None and seconds > 0:
            delay = min(seconds, self._max_delay)
            self._crawl_delays[host] = delay
            while len(self._crawl_delays) > _MAX_REMEMBERED_HOSTS:
                self._crawl_delays.popitem(last=False)
            if delay > self._interval:
                await self._limiter.hold_off(host, delay)

    def interval_for(self, host: str) -> float:
        adaptive = min(self._latencies.get(host, 0.0), self._max_delay)
        return max(self._interval, self._crawl_delays.get(host, 0.0), adaptive)

    def _answered_in(self, host: str, seconds: float) -> None:
        previous = self._latencies.pop(host, seconds)
        self._latencies[host] = 0.7 * previous + 0.3 * seconds
        while len(self._latencies) > _MAX_REMEMBERED_HOSTS:
            self._latencies.popitem(last=False)

    async def check_url(self, url: str) -> None:
        await self._inner.check_url(url)

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: Collection[str] = HTML_MEDIA_TYPES,
        max_bytes: int | None = None,
    ) -> FetchedPage:
        host = host_key(url)
        async with self._limiter.slot(host, self._concurrency, self._slot_lease):
            await self._limiter.wait_turn(host, self.interval_for(host))
            started = time.monotonic()
            try:
                page = await self._inner.fetch(
                    url, etag=etag, last_modified=last_modified, accept=accept,
                    max_bytes=max_bytes,
                )  # fmt: skip
                self._answered_in(host, time.monotonic() - started)
                return page
            except FetchError as exc:
                if exc.status in (429, 503):
                    hold = exc.retry_after_seconds or self._default_hold
                    await self._limiter.hold_off(host, min(hold, self._max_delay))
                raise
