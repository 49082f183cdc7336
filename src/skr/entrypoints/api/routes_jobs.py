"""Routes that start, control and follow background work: ingest and jobs."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse

from skr.domain.errors import InvalidInputError, NotFoundError, RateLimitedError
from skr.domain.models import Job, JobKind
from skr.entrypoints.api.dependencies import CallerDep, ContainerDep, TenantDep, get_caller
from skr.entrypoints.api.schemas import (
    CrawlOptions,
    IngestAccepted,
    IngestRequest,
    JobCountersRead,
    JobErrorRead,
    JobRead,
    JobsPage,
    problem_responses,
)
from skr.observability.logs import current_request_id
from skr.ports.job_events import QUEUE_SIGNAL
from skr.services.crawl.url_normalization import normalize_url, same_site
from skr.services.jobs.worker import job_rate, watch_job
from skr.wiring.container import Container

router = APIRouter(
    prefix="/v1",
    tags=["jobs"],
    dependencies=[Depends(get_caller)],
    responses=problem_responses(401, 403, 422, 429, 503),
)

# A watcher re-reads its job at least this often, whatever the events do.
EVENTS_POLL_SECONDS = 2.0
# A comment line this often keeps proxies from closing a quiet stream.
EVENTS_KEEP_ALIVE_SECONDS = 15.0
# No stream lives longer; a client that still cares opens another.
EVENTS_MAX_SECONDS = 3600.0

JobId = Annotated[str, Path(min_length=1, max_length=64)]


def job_read(job: Job) -> JobRead:
    rate, eta = job_rate(job)
    return JobRead(
        id=job.id,
        kind=job.kind.value,
        status=job.status.value,
        url=job.url,
        collection_id=job.collection_id,
        counters=JobCountersRead(**job.counters.as_dict()),
        pages_per_second=None if rate is None else round(rate, 3),
        eta_seconds=None if eta is None else round(eta, 1),
        errors=[JobErrorRead(url=e.url, reason=e.reason) for e in job.errors],
        reason=job.reason,
        attempts=job.attempts,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def _crawl_options(crawl: CrawlOptions, url: str, container: Container) -> dict[str, object]:
    limit = container.settings.crawl_max_pages_limit
    if crawl.max_pages > limit:
        raise InvalidInputError(f"max_pages is at most {limit} on this SKR")
    if crawl.prefix is not None:
        prefix = normalize_url(crawl.prefix)
        if not same_site(url, url, prefix=prefix):
            raise InvalidInputError("the start URL must be under the crawl's prefix")
    return crawl.model_dump()


@router.post(
    "/ingest",
    status_code=202,
    response_model=IngestAccepted,
    responses=problem_responses(400, 404, 413),
)
async def ingest(
    body: IngestRequest, container: ContainerDep, caller: CallerDep, response: Response
) -> IngestAccepted:
    """Queue a page (HTML or PDF) for ingestion, or with `crawl` a whole site; the work
    happens in the background."""
    url = body.url.strip().split("#", 1)[0]
    await container.fetcher.check_url(url)
    kind, options = JobKind.INGEST, dict[str, object]()
    if body.crawl is not None:
        kind, options = JobKind.CRAWL, {"crawl": _crawl_options(body.crawl, url, container)}
    options["tenant"] = tenant = caller.tenant
    if caller.key is not None:
        limit = container.settings.key_max_active_jobs
        if await container.job_queue.count_active(caller.key.id) >= limit:
            raise RateLimitedError(
                f"this API key already has {limit} jobs queued, running or paused; "
                "try again when one ends",
                30,
            )
        options["api_key"] = caller.key.id
    collection = await container.collections.resolve(body.collection, tenant)
    options["request_id"] = current_request_id()  # the job's log lines carry it
    job = await container.job_queue.enqueue(kind, collection.id, url, options)
    await container.job_events.publish(QUEUE_SIGNAL)  # an idle worker takes it at once
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return IngestAccepted(job_id=job.id, status=job.status.value, url=url)


@router.get("/jobs", response_model=JobsPage)
async def list_jobs(
    container: ContainerDep, tenant: TenantDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> JobsPage:
    """The tenant's recent jobs, newest first."""
    jobs = await container.job_queue.list_recent(limit, tenant)
    return JobsPage(jobs=[job_read(j) for j in jobs])


async def _tenants_job(container: Container, job_id: str, tenant: str) -> Job:
    """The job, if it is this tenant's; another tenant's job is as unknown as a made-up id."""
    job = await container.job_queue.get(job_id)
    if job.tenant != tenant:
        raise NotFoundError(f"there is no job with id {job_id!r}")
    return job


@router.get("/jobs/{job_id}", response_model=JobRead, responses=problem_responses(404))
async def get_job(job_id: JobId, container: ContainerDep, tenant: TenantDep) -> JobRead:
    return job_read(await _tenants_job(container, job_id, tenant))


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"},
        **problem_responses(404),
    },
)
async def job_events(
    job_id: JobId, container: ContainerDep, tenant: TenantDep
) -> StreamingResponse:
    """The job live, as server-sent events: an `event: job` with the job (as `GET
    /v1/jobs/{id}` shows it) now and after each change, a `: keep-alive` comment every
    15 s, and the end of the stream after the job reaches a final status."""
    await _tenants_job(container, job_id, tenant)  # unknown: a 404 before the stream starts
    snapshots = watch_job(
        container.job_queue, container.job_events, job_id,
        poll_seconds=EVENTS_POLL_SECONDS, max_seconds=EVENTS_MAX_SECONDS,
    )  # fmt: skip
    return StreamingResponse(
        _job_event_stream(snapshots),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _job_event_stream(snapshots: AsyncGenerator[Job | None, None]) -> AsyncIterator[str]:
    """Starlette cancels this stream when the client goes (it listens for the disconnect
    itself); a second reader of ``receive`` here raced with it and ended live streams.
    Where a server leaves disconnects to the app, the next send (at most a keep-alive
    later) fails and ends it."""
    last_sent = anyio.current_time()
    async with aclosing(snapshots):
        async for job in snapshots:
            now = anyio.current_time()
            if job is not None:  # shown at once: a queue may share the object it returned
                yield f"event: job\ndata: {job_read(job).model_dump_json()}\n\n"
                last_sent = now
            elif now - last_sent >= EVENTS_KEEP_ALIVE_SECONDS:
                yield ": keep-alive\n\n"
                last_sent = now


@router.post(
    "/jobs/{job_id}/{action}", response_model=JobRead, responses=problem_responses(404, 409)
)
async def control_job(
    job_id: JobId,
    action: Annotated[str, Path(pattern="^(pause|resume|cancel)$")],
    container: ContainerDep,
    tenant: TenantDep,
) -> JobRead:
    """Pause, resume or cancel a job."""
    await _tenants_job(container, job_id, tenant)
    job = await container.job_queue.control(job_id, action)
    await container.job_events.publish(job.id)
    if action == "resume":
        await container.job_events.publish(QUEUE_SIGNAL)
    return job_read(job)
