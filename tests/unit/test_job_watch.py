"""Watching a job on fakes: the worker's signals, the polling fallback, and the bounds."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import anyio
import pytest

from skr.adapters.memory.job_events import MemoryJobEvents
from skr.domain.errors import NotFoundError
from skr.domain.models import Job, JobKind, JobStatus
from skr.ports.job_events import JobListener
from skr.services.jobs.progress import watch_job
from skr.services.jobs.worker import JobWorker, WorkerOptions
from tests.fakes.fake_job_queue import InMemoryJobQueue
from tests.unit.test_ingest_and_worker import PAGE, URL, build

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RecordingJobEvents(MemoryJobEvents):
    """In-process events that also remember every publish."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[str] = []

    async def publish(self, job_id: str) -> None:
        self.published.append(job_id)
        await super().publish(job_id)


class SilentJobEvents:
    """Events that never wake anyone, as when they come from another process without Redis."""

    async def publish(self, job_id: str) -> None:
        return

    def listen(self, job_id: str) -> AbstractAsyncContextManager[JobListener]:
        return MemoryJobEvents().listen(job_id)


async def collect(snapshots: AsyncIterator[Job | None]) -> list[tuple[str, int] | None]:
    """Each snapshot as (status, indexed), taken as it arrives (the fake queue shares jobs)."""
    return [None if j is None else (j.status.value, j.counters.indexed) async for j in snapshots]


async def test_the_worker_signals_running_progress_and_the_end() -> None:
    service, store, _, _ = build({URL: PAGE})
    collection = await store.ensure_collection("default", "t")
    queue, events = InMemoryJobQueue(), RecordingJobEvents()
    job = await queue.enqueue(JobKind.INGEST, collection.id, URL, {})
    worker = JobWorker(
        queue=queue,
        ingest=service,
        options=WorkerOptions(concurrency=1, lease_seconds=5, poll_seconds=0.01),
        events=events,
    )
    leased = await queue.lease(worker.owner, 5)
    assert leased is not None
    await worker.run_job(leased)
    assert events.published == [job.id] * 3  # leased, progress saved, finished


async def test_a_watch_follows_the_worker_to_the_end() -> None:
    service, store, _, _ = build({URL: PAGE})
    collection = await store.ensure_collection("default", "t")
    queue, events = InMemoryJobQueue(), MemoryJobEvents()
    job = await queue.enqueue(JobKind.INGEST, collection.id, URL, {})
    worker = JobWorker(
        queue=queue,
        ingest=service,
        options=WorkerOptions(concurrency=1, lease_seconds=5, poll_seconds=0.01),
        events=events,
    )
    started = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        seen = await collect(watch_job(queue, events, job.id, poll_seconds=10, max_seconds=60))
        group.cancel_scope.cancel()
    assert time.monotonic() - started < 5  # woken by events, not by the 10 s poll
    assert seen[0] in {("queued", 0), ("running", 0)}
    assert seen[-1] == ("succeeded", 1)
    assert None not in seen
    assert events.watched_jobs == 0


async def test_without_events_a_watch_re_reads_on_its_poll() -> None:
    queue = InMemoryJobQueue()
    job = await queue.enqueue(JobKind.INGEST, "c", URL, {})
    watching = watch_job(queue, SilentJobEvents(), job.id, poll_seconds=0.05, max_seconds=10)
    assert await anext(watching) is job
    assert await anext(watching) is None  # nothing changed: a tick for keep-alives
    job.status, job.counters.indexed = JobStatus.SUCCEEDED, 1
    rest = await collect(watching)
    assert rest[-1] == ("succeeded", 1)


async def test_a_watch_ends_after_max_seconds() -> None:
    queue = InMemoryJobQueue()
    job = await queue.enqueue(JobKind.INGEST, "c", URL, {})
    started = time.monotonic()
    seen = await collect(
        watch_job(queue, MemoryJobEvents(), job.id, poll_seconds=0.05, max_seconds=0.3)
    )
    assert 0.25 < time.monotonic() - started < 2
    assert seen[0] == ("queued", 0) and set(seen[1:]) == {None}


async def test_a_finished_job_is_one_snapshot_and_an_unknown_one_is_not_found() -> None:
    queue = InMemoryJobQueue()
    job = await queue.enqueue(JobKind.INGEST, "c", URL, {})
    job.status = JobStatus.CANCELLED
    events = MemoryJobEvents()
    assert await collect(watch_job(queue, events, job.id, poll_seconds=1, max_seconds=5)) == [
        ("cancelled", 0)
    ]
    with pytest.raises(NotFoundError):
        await collect(watch_job(queue, events, "unknown", poll_seconds=1, max_seconds=5))
    assert events.watched_jobs == 0
