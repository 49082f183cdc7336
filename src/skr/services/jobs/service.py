"""Submitting and controlling jobs: the rules every entrypoint (API, web page, CLI, MCP)
goes through — what may be fetched, crawl limits, a key's active jobs, and tenancy."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import asdict, dataclass

from skr.domain.access import Caller
from skr.domain.errors import InvalidInputError, NotFoundError, RateLimitedError
from skr.domain.models import Job, JobKind
from skr.observability.logs import current_request_id
from skr.ports.fetcher import Fetcher
from skr.ports.job_events import QUEUE_SIGNAL, JobEvents
from skr.ports.job_queue import JobQueue
from skr.services.collections import CollectionResolver
from skr.services.crawl.url_normalization import normalize_url, same_site
from skr.services.jobs.progress import watch_job

CONTROL_ACTIONS = ("pause", "resume", "cancel")
# A key over its active jobs is told to come back after this long.
_ACTIVE_JOBS_RETRY_SECONDS = 30


@dataclass(frozen=True, slots=True)
class CrawlRequest:
    """A site crawl as asked for (the API's crawl options, checked by :class:`JobService`)."""

    max_depth: int = 3
    max_pages: int = 200
    same_host: bool = True
    prefix: str | None = None
    sitemap: bool = True


@dataclass(frozen=True, slots=True)
class JobLimits:
    max_pages: int  # the most pages one crawl may ask for
    key_max_active_jobs: int  # jobs one API key may have queued, running or paused


class JobService:
    """Starts ingest and crawl jobs, and reads, watches and controls a tenant's jobs."""

    def __init__(
        self,
        *,
        queue: JobQueue,
        events: JobEvents,
        fetcher: Fetcher,
        collections: CollectionResolver,
        limits: JobLimits,
    ) -> None:
        self._queue = queue
        self._events = events
        self._fetcher = fetcher
        self._collections = collections
        self._limits = limits

    @property
    def limits(self) -> JobLimits:
        return self._limits

    async def submit(
        self, url: str, caller: Caller, *, collection: str, crawl: CrawlRequest | None = None
    ) -> Job:
        """Queue a page (or with ``crawl`` a site) for the caller's collection; an idle
        worker is woken at once. The URL is checked by the network guard first."""
        url = url.strip().split("#", 1)[0]
        await self._fetcher.check_url(url)
        kind, options = JobKind.INGEST, dict[str, object]()
        if crawl is not None:
            kind, options = JobKind.CRAWL, {"crawl": self._crawl_options(crawl, url)}
        options["tenant"] = caller.tenant
        if caller.key is not None:
            await self._check_active_jobs(caller.key.id)
            options["api_key"] = caller.key.id
        found = await self._collections.resolve(collection, caller.tenant)
        options["request_id"] = current_request_id()  # the job's log lines carry it
        job = await self._queue.enqueue(kind, found.id, url, options)
        await self._events.publish(QUEUE_SIGNAL)
        return job

    def _crawl_options(self, crawl: CrawlRequest, url: str) -> dict[str, object]:
        limit = self._limits.max_pages
        if crawl.max_pages > limit:
            raise InvalidInputError(f"max_pages is at most {limit} on this SKR")
        if crawl.prefix is not None:
            prefix = normalize_url(crawl.prefix)
            if not same_site(url, url, prefix=prefix):
                raise InvalidInputError("the start URL must be under the crawl's prefix")
        return asdict(crawl)

    async def _check_active_jobs(self, key_id: str) -> None:
        limit = self._limits.key_max_active_jobs
        if await self._queue.count_active(key_id) >= limit:
            raise RateLimitedError(
                f"this API key already has {limit} jobs queued, running or paused; "
                "try again when one ends",
                _ACTIVE_JOBS_RETRY_SECONDS,
            )

    async def list_recent(self, tenant: str, limit: int) -> list[Job]:
        """The tenant's recent jobs, newest first."""
        return await self._queue.list_recent(limit, tenant)

    async def get(self, job_id: str, tenant: str) -> Job:
        """The job, if it is this tenant's; another tenant's job is as unknown as a made-up id."""
        job = await self._queue.get(job_id)
        if job.tenant != tenant:
            raise NotFoundError(f"there is no job with id {job_id!r}")
        return job

    async def control(self, job_id: str, action: str, tenant: str) -> Job:
        """Pause, resume or cancel the tenant's job; its worker hears of it at once."""
        if action not in CONTROL_ACTIONS:
            raise InvalidInputError(f"a job can be {', '.join(CONTROL_ACTIONS)}; not {action!r}")
        await self.get(job_id, tenant)
        job = await self._queue.control(job_id, action)
        await self._events.publish(job.id)
        if action == "resume":
            await self._events.publish(QUEUE_SIGNAL)
        return job

    async def watch(
        self, job_id: str, tenant: str, *, poll_seconds: float, max_seconds: float
    ) -> AsyncGenerator[Job | None, None]:
        """The tenant's job now and after each change (``watch_job``); ``NotFoundError``
        at once, before any watching, for a job that is not the tenant's."""
        await self.get(job_id, tenant)
        return watch_job(
            self._queue, self._events, job_id, poll_seconds=poll_seconds, max_seconds=max_seconds
        )
