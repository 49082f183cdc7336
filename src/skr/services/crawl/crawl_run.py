"""What one crawl is asked to cover, how hard it works, and what a worker's run of it
keeps in memory."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from skr.domain.errors import InvalidInputError
from skr.domain.models import Job, JobError
from skr.services.crawl.boilerplate import SiteBoilerplate
from skr.services.crawl.robots_policy import RobotsPolicy
from skr.services.crawl.url_normalization import normalize_url, same_site

MAX_JOB_ERRORS = 200


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
class CrawlRun:
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

    def in_scope(self, url: str) -> str | None:
        """``url`` normalised when the crawl covers it, else ``None``."""
        normalized = normalized_or_none(url)
        if normalized is None:
            return None
        options = self.options
        if not same_site(normalized, self.root, same_host=options.same_host, prefix=options.prefix):
            return None
        return normalized

    def note_error(self, url: str, reason: str) -> None:
        self.job.errors.append(JobError(url, reason))
        del self.job.errors[:-MAX_JOB_ERRORS]


def normalized_or_none(url: str) -> str | None:
    try:
        return normalize_url(url)
    except InvalidInputError:
        return None
