"""What only the PostgreSQL JobQueue promises: many concurrent workers never share a job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from skr.adapters.postgres.database import PostgresDatabase
from skr.adapters.postgres.job_queue import PostgresJobQueue
from skr.domain.errors import ConflictError, DependencyError
from skr.domain.models import Job, JobKind, JobStatus
from tests.fixtures.stores import fresh_postgres

pytestmark = pytest.mark.anyio

WORKERS = 8


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def database() -> AsyncIterator[PostgresDatabase]:
    # more connections than workers, so every lesser really runs on its own connection
    async with fresh_postgres(max_size=WORKERS + 2) as built:
        yield built


@pytest.fixture
def queue(database: PostgresDatabase) -> PostgresJobQueue:
    return PostgresJobQueue(database, max_attempts=2)


async def _lease_all(queue: PostgresJobQueue, owner: str) -> list[Job]:
    taken: list[Job] = []
    while (job := await queue.lease(owner, 60)) is not None:
        taken.append(job)
    return taken


async def test_concurrent_lessers_take_every_job_exactly_once(queue: PostgresJobQueue) -> None:
    enqueued = [
        await queue.enqueue(JobKind.INGEST, "c", f"http://x.test/{i}", {}) for i in range(50)
    ]
    results = await asyncio.gather(*(_lease_all(queue, f"w{n}") for n in range(WORKERS)))
    leased = [job.id for taken in results for job in taken]
    assert len(leased) == 50
    assert sorted(leased) == sorted(job.id for job in enqueued)
    assert await queue.depth() == 0
    stored = await queue.list_recent(100)
    assert all(job.status is JobStatus.RUNNING and job.attempts == 1 for job in stored)
    owners = {job.id: job.lease_owner for taken in results for job in taken}
    assert all(owners[job.id] == job.lease_owner for job in stored)
    assert sum(1 for taken in results if taken) > 1  # the workers really did overlap


async def test_a_job_locked_by_another_worker_is_skipped_not_waited_for(
    database: PostgresDatabase, queue: PostgresJobQueue
) -> None:
    first = await queue.enqueue(JobKind.INGEST, "c", "http://x.test/1", {})
    second = await queue.enqueue(JobKind.INGEST, "c", "http://x.test/2", {})
    async with database.transaction() as conn:
        await conn.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (first.id,))
        leased = await asyncio.wait_for(queue.lease("w1", 60), timeout=5)
    assert leased is not None and leased.id == second.id
    again = await queue.lease("w2", 60)
    assert again is not None and again.id == first.id


async def test_an_expired_lease_goes_to_one_worker_and_the_old_owner_is_refused(
    queue: PostgresJobQueue,
) -> None:
    job = await queue.enqueue(JobKind.CRAWL, "c", "http://x.test/", {})
    await queue.lease("dead-worker", 0.05)
    await asyncio.sleep(0.1)
    results = await asyncio.gather(*(queue.lease(f"w{n}", 60) for n in range(WORKERS)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].id == job.id and winners[0].attempts == 2
    owner = winners[0].lease_owner
    assert owner is not None and owner != "dead-worker"

    await queue.finish(job.id, "dead-worker", JobStatus.SUCCEEDED, "late")
    still = await queue.get(job.id)
    assert still.status is JobStatus.RUNNING and still.lease_owner == owner
    with pytest.raises(ConflictError):
        await queue.heartbeat(job.id, "dead-worker", 60)
    with pytest.raises(ConflictError):
        await queue.retry_later(job.id, "dead-worker", "late", 1)

    await queue.finish(job.id, owner, JobStatus.SUCCEEDED, None)
    done = await queue.get(job.id)
    assert done.status is JobStatus.SUCCEEDED and done.lease_owner is None


async def test_an_exhausted_job_fails_once_under_concurrent_lessers(
    queue: PostgresJobQueue,
) -> None:
    job = await queue.enqueue(JobKind.INGEST, "c", "http://x.test/", {})
    for owner in ("w1", "w2"):
        await queue.lease(owner, 0.01)
        await asyncio.sleep(0.05)
    results = await asyncio.gather(*(queue.lease(f"w{n}", 60) for n in range(WORKERS)))
    assert results == [None] * WORKERS
    failed = await queue.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 2
    assert failed.reason == "the job stopped without finishing 2 times"


async def test_times_are_aware_and_come_from_the_database_clock(queue: PostgresJobQueue) -> None:
    await queue.enqueue(JobKind.INGEST, "c", "http://x.test/", {})
    job = await queue.lease("w1", 30)
    assert job is not None and job.started_at is not None and job.lease_expires_at is not None
    assert job.created_at.tzinfo is not None and job.lease_expires_at.tzinfo is not None
    # one statement, one now(): the lease ends exactly lease_seconds after it started
    assert job.lease_expires_at - job.started_at == timedelta(seconds=30)


async def test_driver_errors_become_dependency_errors(
    database: PostgresDatabase, queue: PostgresJobQueue
) -> None:
    async with database.connection() as conn:
        await conn.execute("ALTER TABLE jobs RENAME TO jobs_elsewhere")
    with pytest.raises(DependencyError) as caught:
        await queue.depth()
    assert caught.value.__cause__ is not None
