"""Routes that start and control background work: ingest and jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from skr.domain.errors import InvalidInputError
from skr.domain.models import Job, JobKind
from skr.entrypoints.api.dependencies import ContainerDep, TenantDep
from skr.entrypoints.api.schemas import (
    IngestAccepted,
    IngestRequest,
    JobCountersRead,
    JobErrorRead,
    JobRead,
    JobsPage,
)
from skr.services.collections import resolve_collection
from skr.services.jobs import job_rate

router = APIRouter(prefix="/v1", tags=["jobs"])

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


@router.post("/ingest", status_code=202, response_model=IngestAccepted)
async def ingest(
    body: IngestRequest, container: ContainerDep, tenant: TenantDep, response: Response
) -> IngestAccepted:
    """Queue a page for ingestion; the work happens in the background."""
    if body.crawl is not None:
        raise InvalidInputError("site crawls are not available in this version of SKR yet")
    url = body.url.strip().split("#", 1)[0]
    await container.fetcher.check_url(url)
    collection = await resolve_collection(container.store, body.collection, tenant)
    job = await container.job_queue.enqueue(JobKind.INGEST, collection.id, url, {})
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return IngestAccepted(job_id=job.id, status=job.status.value, url=url)


@router.get("/jobs", response_model=JobsPage)
async def list_jobs(
    container: ContainerDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> JobsPage:
    """Recent jobs, newest first."""
    jobs = await container.job_queue.list_recent(limit)
    return JobsPage(jobs=[job_read(j) for j in jobs])


@router.get("/jobs/{job_id}", response_model=JobRead)
async def get_job(job_id: JobId, container: ContainerDep) -> JobRead:
    return job_read(await container.job_queue.get(job_id))


@router.post("/jobs/{job_id}/{action}", response_model=JobRead)
async def control_job(
    job_id: JobId,
    action: Annotated[str, Path(pattern="^(pause|resume|cancel)$")],
    container: ContainerDep,
) -> JobRead:
    """Pause, resume or cancel a job."""
    return job_read(await container.job_queue.control(job_id, action))
