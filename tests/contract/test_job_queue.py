"""The JobQueue contract: leases, expiry, progress and control behave the same everywhere."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skr.domain.errors import ConflictError, InvalidInputError, NotFoundError
from skr.domain.models import JobError, JobKind, JobStatus
from skr.ports.job_queue import JobQueue
from tests.fixtures.kinds import class_id
from tests.fixtures.stores import QUEUE_KINDS, make_queue

pytestmark = pytest.mark.anyio

# how far a store's timestamps may round past the test's clock (SQLite's julianday
# keeps milliseconds)
_CLOCK_SLACK = 0.05


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=QUEUE_KINDS, ids=class_id)
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobQueue]:
    async with make_queue(request.param, tmp_path, max_attempts=2) as built:
        yield built  # type: ignore[misc]


async def test_jobs_are_leased_once_in_order(queue: JobQueue) -> None:
    first = await queue.enqueue(JobKind.INGEST, "c", "http://x.test/1", {})
    second = await queue.enqueue(JobKind.INGEST, "c", "http://x.test/2", {"a": 1})
    assert first.status is JobStatus.QUEUED
    assert await queue.depth() == 2
    leased = await queue.lease("w1", 30)
    assert leased is not None and leased.id == first.id
    assert leased.status is JobStatus.RUNNING and leased.attempts == 1
    other = await queue.lease("w2", 30)
    assert other is not None and other.id == second.id and other.options == {"a": 1}
    assert await queue.lease("w3", 30) is None
    assert [j.id for j in await queue.list_recent(10)] == [second.id, first.id]


async def test_recent_jobs_are_listed_per_tenant(queue: JobQueue) -> None:
    mine = await queue.enqueue(JobKind.INGEST, "c1", "http://x.test/1", {"tenant": "acme"})
    theirs = await queue.enqueue(JobKind.CRAWL, "c2", "http://x.test/2", {"tenant": "globex"})
    untagged = await queue.enqueue(JobKind.INGEST, "c3", "http://x.test/3", {})
    assert [j.id for j in await queue.list_recent(10, "acme")] == [mine.id]
    assert [j.id for j in await queue.list_recent(10, "globex")] == [theirs.id]
    assert [j.id for j in await queue.list_recent(10, "default")] == [untagged.id]
    assert [j.id for j in await queue.list_recent(2)] == [untagged.id, theirs.id]
    assert (await queue.get(theirs.id)).tenant == "globex"
    assert (await queue.get(untagged.id)).tenant == "default"


async def test_active_jobs_are_counted_per_api_key(queue: JobQueue) -> None:
    first = await queue.enqueue(JobKind.INGEST, "c", "http://x.test/1", {"api_key": "k1"})
    await queue.enqueue(JobKind.CRAWL, "c", "http://x.test/2", {"api_key": "k1"})
    await queue.enqueue(JobKind.INGEST, "c", "http://x.test/3", {"api_key": "k2"})
    await queue.enqueue(JobKind.INGEST, "c", "http://x.test/4", {})
    assert await queue.count_active("k1") == 2
    leased = await queue.lease("w", 30)
    assert leased is not None and leased.id == first.id
    assert await queue.count_active("k1") == 2  # running still counts
    await queue.finish(first.id, "w", JobStatus.SUCCEEDED, None)
    assert await queue.count_active("k1") == 1
    assert await queue.count_active("k2") == 1
    assert await queue.count_active("nobody") == 0


async def test_expired_lease_is_taken_over(queue: JobQueue) -> None:
    job = await queue.enqueue(JobKind.INGEST, "c", "http://x.test/1", {})
    await queue.lease("dead-worker", 0.05)
    time.sleep(0.1)
    again = await queue.lease("w2", 30)
    assert again is not None and again.id == job.id and again.attempts == 2
    with pytest.raises(ConflictError):
        await queue.heartbeat(job.id, "dead-worker", 30)
    # the dead worker's late finish must not overwrite the new owner's run
    await queue.finish(job.id, "dead-worker", JobStatus.FAILED, "late")
    assert (await queue.get(job.id)).status is JobStatus.RUNNING


async def test_a_job_that_keeps_dying_fails(queue: JobQueue) -> None:
    job = await queue.enqueue(JobKind.INGEST, "c", "http://x.test/1", {})
    await queue.lease("w1", 0.01)
    time.sleep(0.05)
    await queue.lease("w2", 0.01)
    time.sleep(0.05)
    assert await queue.lease("w3", 30) is None
    failed = await queue.get(job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.reason and "2 times" in failed.reason


async def test_progress_and_finish(queue: JobQueue) -> None:
    job = await queue.enqueue(JobKind.INGEST, "c", "http://x.test/1", {})
    leased = await queue.lease("w1", 30)
    assert leased is not None
    leased.counters.fetched = 1
    leased.errors.append(JobError("http://x.test/1", "boom"))
    await queue.save_progress(leased)
    assert await queue.heartbeat(job.id, "w1", 30) is JobStatus.RUNNING
    await queue.finish(job.id, "w1", JobStatus.SUCCEEDED, None)
    done = await queue.get(job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.counters.fetched == 1
    assert done.errors == [JobError("http://x.test/1", "boom")]
    assert done.finished_at is not None
    with pytest.raises(InvalidInputError):
        await queue.finish(job.id, "w1", JobStatus.RUNNING, None)


async def test_pause_resume_cancel(queue: JobQueue) -> None:
    job = await queue.enqueue(JobKind.INGEST, "c", "http://x.test/1", {})
    await queue.lease("w1", 30)
    assert (await queue.control(job.id, "pause")).status is JobStatus.PAUSED
    assert await queue.heartbeat(job.id, "w1", 30) is JobStatus.PAUSED
    assert await queue.lease("w2", 30) is None
    with pytest.raises(ConflictError):
        await queue.control(job.id, "pause")
    assert (await queue.control(job.id, "resume")).status is JobStatus.QUEUED
    assert (await queue.control(job.id, "cancel")).status is JobStatus.CANCELLED
    with pytest.raises(ConflictError):
        await queue.control(job.id, "resume")
    with pytest.raises(InvalidInputError):
        await queue.control(job.id, "explode")
    with pytest.raises(NotFoundError):
        await queue.control("missing", "pause")
    with pytest.raises(NotFoundError):
        await queue.get("missing")


async def test_retry_later_waits_then_runs_again_until_attempts_run_out(queue: JobQueue) -> None:
    job = await queue.enqueue(JobKind.INGEST, "c", "http://x.test/1", {})
    await queue.lease("w1", 30)
    assert await queue.retry_later(job.id, "w1", "store down", 0.1) is JobStatus.QUEUED
    waiting = await queue.get(job.id)
    assert waiting.status is JobStatus.QUEUED and waiting.reason == "store down"
    assert await queue.lease("w2", 30) is None  # still backing off
    time.sleep(0.15)
    again = await queue.lease("w2", 30)
    assert again is not None and again.attempts == 2
    with pytest.raises(ConflictError):
        await queue.retry_later(job.id, "w1", "not mine", 0.1)
    # max_attempts is 2 in this suite: the second transient failure is final
    assert await queue.retry_later(job.id, "w2", "still down", 0.1) is JobStatus.FAILED
    dead = await queue.get(job.id)
    assert dead.status is JobStatus.FAILED and dead.reason == "still down"
    assert dead.finished_at is not None


async def test_oldest_queued_age_counts_only_jobs_waiting_to_run(queue: JobQueue) -> None:
    assert await queue.oldest_queued_age_seconds() == 0.0
    # Bounds come from the test's own clock around each call, so a slow machine
    # cannot push an age past them: an age is at most the time elapsed since just
    # before the job began to wait.
    first = await queue.enqueue(JobKind.INGEST, "c", "http://x.test/1", {})
    time.sleep(1.0)
    before_second = time.monotonic()
    await queue.enqueue(JobKind.INGEST, "c", "http://x.test/2", {})
    age = await queue.oldest_queued_age_seconds()
    assert 1.0 <= age < 5  # the first job's wait, not the second's
    leased = await queue.lease("w1", 30)
    assert leased is not None and leased.id == first.id
    age = await queue.oldest_queued_age_seconds()
    # only the second waits now: its age is bounded by the time since it was
    # enqueued, which is at least a second less than the first's
    assert age <= time.monotonic() - before_second + _CLOCK_SLACK
    # a job backing off before a retry is not waiting yet; once its delay ends it is,
    # counted from then
    second = await queue.lease("w1", 30)
    assert second is not None
    before_retry = time.monotonic()
    await queue.retry_later(second.id, "w1", "store down", 0.3)
    assert await queue.oldest_queued_age_seconds() == 0.0
    time.sleep(0.4)
    age = await queue.oldest_queued_age_seconds()
    assert 0.0 < age <= time.monotonic() - before_retry - 0.3 + _CLOCK_SLACK
    # paused jobs do not wait; a resumed one waits from its resume
    await queue.control(first.id, "pause")
    time.sleep(0.5)
    before_resume = time.monotonic()
    await queue.control(first.id, "resume")
    await queue.control(second.id, "cancel")
    age = await queue.oldest_queued_age_seconds()
    assert age <= time.monotonic() - before_resume + _CLOCK_SLACK
