"""Running jobs: the worker loop that leases, runs and finishes them."""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass

import anyio

from skr.domain.errors import (
    ConflictError,
    DependencyError,
    FetchError,
    NotFoundError,
    SKRError,
)
from skr.domain.models import Job, JobError, JobKind, JobStatus
from skr.observability.logs import bound_request_id
from skr.ports.job_events import QUEUE_SIGNAL, JobEvents, JobListener
from skr.ports.job_queue import JobQueue
from skr.services.crawl.service import CrawlService
from skr.services.ingest import IngestService, PageOutcome, PageOutcomeKind

logger = logging.getLogger(__name__)


class _Sleeper:
    """A listener that hears nothing: without events, a worker polls."""

    async def wait(self, timeout_seconds: float) -> bool:
        await anyio.sleep(timeout_seconds)
        return False


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    concurrency: int
    lease_seconds: float
    poll_seconds: float
    retry_base_seconds: float = 2.0
    retry_cap_seconds: float = 300.0


class JobWorker:
    """Leases jobs from the queue and runs them; several loops run concurrently."""

    def __init__(
        self,
        *,
        queue: JobQueue,
        ingest: IngestService,
        options: WorkerOptions,
        on_page: Callable[[PageOutcome | None], None] | None = None,
        events: JobEvents | None = None,
        crawl: CrawlService | None = None,
    ) -> None:
        self._queue = queue
        self._ingest = ingest
        self._crawl = crawl
        self._options = options
        self._on_page = on_page
        self._events = events
        # host and pid say which process holds a lease; the suffix tells restarts apart
        self.owner = f"worker-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    async def run(self) -> None:
        """Run until cancelled."""
        async with anyio.create_task_group() as group:
            for _ in range(self._options.concurrency):
                group.start_soon(self._loop)

    async def _loop(self) -> None:
        # listening from the start, so a job queued while this loop looks is not missed
        async with self._signal(QUEUE_SIGNAL) as queued:
            while True:
                try:
                    job = await self._queue.lease(self.owner, self._options.lease_seconds)
                except SKRError as exc:
                    logger.warning("could not lease a job: %s", exc.detail)
                    job = None
                if job is None:
                    await queued.wait(self._options.poll_seconds)  # a signal, or the poll
                    continue
                try:
                    await self.run_job(job)
                except SKRError as exc:
                    # the queue itself failed; the lease expires and the job is taken again
                    logger.warning("job %s left to its lease: %s", job.id, exc.detail)

    def _signal(self, job_id: str) -> AbstractAsyncContextManager[JobListener]:
        if self._events is None:
            return nullcontext(_Sleeper())
        return self._events.listen(job_id)

    async def run_job(self, job: Job) -> None:
        """Run one leased job to its end, heartbeating its lease; pause or cancel stops it.
        Its log lines carry the id of the request that queued it."""
        with bound_request_id(job.options.get("request_id")):
            logger.info(
                "job %s started: %s of %s, attempt %d", job.id, job.kind, job.url, job.attempts
            )
            await self._run_leased(job)

    async def _run_leased(self, job: Job) -> None:
        stopped_by: JobStatus | None = None
        status: JobStatus = JobStatus.FAILED
        reason: str | None = "stopped"
        await self._changed(job.id)  # leased: it is running now
        async with anyio.create_task_group() as group:

            async def heartbeat() -> None:
                async with self._signal(job.id) as changed:
                    while True:
                        # every third of the lease, and at once when the job changes: a
                        # pause or a cancel from the API stops the run without waiting
                        await changed.wait(self._options.lease_seconds / 3)
                        if not await beat():
                            return

            async def beat() -> bool:
                """Renew the lease; False once the run must stop."""
                nonlocal stopped_by
                try:
                    now = await self._queue.heartbeat(
                        job.id, self.owner, self._options.lease_seconds
                    )
                except (ConflictError, NotFoundError):  # another worker's now, or gone
                    now = JobStatus.CANCELLED
                except DependencyError as exc:
                    # the queue is out of reach for now (a database restart): the job
                    # goes on and the next beat tries again; if the lease runs out
                    # meanwhile and another worker takes the job, that beat finds it
                    # and stops this run
                    logger.warning("job %s: could not renew its lease: %s", job.id, exc.detail)
                    return True
                if now is JobStatus.RUNNING:
                    return True
                stopped_by = now
                group.cancel_scope.cancel()
                return False

            group.start_soon(heartbeat)
            try:
                status, reason = await self._execute(job)
            except DependencyError as exc:
                status, reason = JobStatus.QUEUED, exc.detail
            group.cancel_scope.cancel()
        if stopped_by is not None:
            logger.info("job %s stopped: %s", job.id, stopped_by)
            return
        if status is JobStatus.QUEUED and reason is not None:
            delay = self._backoff(job.attempts)
            logger.warning("job %s will be retried in %.0f s: %s", job.id, delay, reason)
            await self._queue.retry_later(job.id, self.owner, reason, delay)
            await self._changed(job.id)
            return
        logger.info("job %s %s%s", job.id, status, f": {reason}" if reason else "")
        await self._queue.finish(job.id, self.owner, status, reason)
        await self._changed(job.id)

    async def _changed(self, job_id: str) -> None:
        """Wake the job's watchers; they read the job again from the queue."""
        if self._events is not None:
            await self._events.publish(job_id)

    def _backoff(self, attempts: int) -> float:
        """Exponential backoff with full jitter, capped."""
        ceiling = min(
            self._options.retry_cap_seconds, self._options.retry_base_seconds * 2**attempts
        )
        return random.uniform(ceiling / 2, ceiling)

    async def _progress(self, job: Job) -> None:
        await self._queue.save_progress(job)
        await self._changed(job.id)

    async def _execute(self, job: Job) -> tuple[JobStatus, str | None]:
        if job.kind is JobKind.CRAWL and self._crawl is not None:
            return await self._run_crawl(job, self._crawl)
        if job.kind is not JobKind.INGEST:
            return JobStatus.FAILED, f"this SKR cannot run {job.kind} jobs yet"
        job.counters.discovered = 1
        try:
            outcome = await self._ingest.ingest_page(job.url, job.collection_id)
        except FetchError as exc:
            return await self._failed(job, exc.detail)
        except DependencyError:
            raise  # transient: the job is retried after a backoff
        except SKRError as exc:
            logger.warning("job %s failed: %s", job.id, exc.detail)
            return await self._failed(job, exc.detail)
        except Exception:  # a bug must fail the job, not kill the worker
            logger.exception("job %s failed unexpectedly", job.id)
            return await self._failed(job, "internal error while ingesting (see the server log)")
        job.counters.fetched = 1
        job.counters.chunks_embedded = outcome.embedded
        if outcome.kind is PageOutcomeKind.INDEXED:
            job.counters.indexed = 1
        else:
            job.counters.unchanged = 1
        await self._queue.save_progress(job)
        await self._changed(job.id)
        if self._on_page is not None:
            self._on_page(outcome)
        return JobStatus.SUCCEEDED, None

    async def _run_crawl(self, job: Job, crawl: CrawlService) -> tuple[JobStatus, str | None]:
        try:
            return await crawl.run(job, self.owner, self._progress)
        except DependencyError:
            raise  # transient: the job is retried after a backoff, its frontier kept
        except SKRError as exc:
            logger.warning("crawl %s failed: %s", job.id, exc.detail)
            return JobStatus.FAILED, exc.detail
        except Exception:  # a bug must fail the job, not kill the worker
            logger.exception("crawl %s failed unexpectedly", job.id)
            return JobStatus.FAILED, "internal error while crawling (see the server log)"

    async def _failed(self, job: Job, reason: str) -> tuple[JobStatus, str | None]:
        job.counters.failed += 1
        job.errors.append(JobError(job.url, reason))
        await self._queue.save_progress(job)
        await self._changed(job.id)
        if self._on_page is not None:
            self._on_page(None)
        return JobStatus.FAILED, reason
