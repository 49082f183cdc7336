"""Routes that start, control and follow background work: ingest and jobs."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse

from skr.domain.models import Job
from skr.entrypoints.api.dependencies import CallerDep, JobServiceDep, TenantDep, get_caller
from skr.entrypoints.api.schemas import (
    IngestAccepted,
    IngestRequest,
    JobCountersRead,
    JobErrorRead,
    JobRead,
    JobsPage,
    problem_responses,
)
from skr.services.jobs.progress import job_rate
from skr.services.jobs.service import CrawlRequest

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


@router.post(
    "/ingest",
    status_code=202,
    response_model=IngestAccepted,
    responses=problem_responses(400, 404, 413),
)
async def ingest(
    body: IngestRequest, jobs: JobServiceDep, caller: CallerDep, response: Response
) -> IngestAccepted:
    """Queue a page (HTML or PDF) for ingestion, or with `crawl` a whole site; the work
    happens in the background."""
    crawl = None if body.crawl is None else CrawlRequest(**body.crawl.model_dump())
    job = await jobs.submit(body.url, caller, collection=body.collection, crawl=crawl)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return IngestAccepted(job_id=job.id, status=job.status.value, url=job.url)


@router.get("/jobs", response_model=JobsPage)
async def list_jobs(
    jobs: JobServiceDep, tenant: TenantDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> JobsPage:
    """The tenant's recent jobs, newest first."""
    return JobsPage(jobs=[job_read(j) for j in await jobs.list_recent(tenant, limit)])


@router.get("/jobs/{job_id}", response_model=JobRead, responses=problem_responses(404))
async def get_job(job_id: JobId, jobs: JobServiceDep, tenant: TenantDep) -> JobRead:
    return job_read(await jobs.get(job_id, tenant))


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"},
        **problem_responses(404),
    },
)
async def job_events(job_id: JobId, jobs: JobServiceDep, tenant: TenantDep) -> StreamingResponse:
    """The job live, as server-sent events: an `event: job` with the job (as `GET
    /v1/jobs/{id}` shows it) now and after each change, a `: keep-alive` comment every
    15 s, and the end of the stream after the job reaches a final status."""
    # unknown: a 404 before the stream starts
    snapshots = await jobs.watch(
        job_id, tenant, poll_seconds=EVENTS_POLL_SECONDS, max_seconds=EVENTS_MAX_SECONDS
    )
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
    jobs: JobServiceDep,
    tenant: TenantDep,
) -> JobRead:
    """Pause, resume or cancel a job."""
    return job_read(await jobs.control(job_id, action, tenant))
