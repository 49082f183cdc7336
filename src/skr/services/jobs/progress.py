"""A job as it goes: watching it live, and its rate and time left."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

import anyio

from skr.domain.errors import DependencyError
from skr.domain.models import Job
from skr.ports.job_events import JobEvents
from skr.ports.job_queue import JobQueue

logger = logging.getLogger(__name__)


async def watch_job(
    queue: JobQueue, events: JobEvents, job_id: str, *, poll_seconds: float, max_seconds: float
) -> AsyncGenerator[Job | None, None]:
    """The job now, then again each time it changes, until it is in a final status or
    ``max_seconds`` pass. Changes are noticed when ``events`` wakes the watcher, or at the
    latest ``poll_seconds`` later by reading the job again (events may be lost, or come
    from another process with no shared transport). Between changes it yields ``None``
    at least every ``poll_seconds``, so the caller can keep a connection alive.
    ``NotFoundError`` for an unknown id, before anything is yielded."""
    deadline = anyio.current_time() + max_seconds
    async with events.listen(job_id) as listener:
        job = await queue.get(job_id)  # read after listening: no change falls in between
        # judged on what was read, not on ``job``, which a queue may share and update
        seen, final = _fingerprint(job), job.status.is_final
        yield job
        while not final:
            left = deadline - anyio.current_time()
            if left <= 0:
                return
            await listener.wait(min(poll_seconds, left))
            try:
                latest = await queue.get(job_id)
            except DependencyError as exc:
                logger.warning("watching job %s: %s; trying again", job_id, exc.detail)
                yield None
                continue
            if _fingerprint(latest) == seen:
                yield None
                continue
            seen, final = _fingerprint(latest), latest.status.is_final
            yield latest


def _fingerprint(job: Job) -> tuple[object, ...]:
    """What a watcher sees change; not rates, which move with the clock alone."""
    counters = tuple(job.counters.as_dict().values())
    return (job.status, counters, len(job.errors), job.reason, job.attempts, job.finished_at)


def job_rate(job: Job) -> tuple[float | None, float | None]:
    """Pages per second and seconds left, from the job's own counters."""
    if job.started_at is None:
        return None, None
    end = job.finished_at or datetime.now(UTC)
    elapsed = max((end - job.started_at).total_seconds(), 1e-6)
    done = job.counters.fetched + job.counters.failed + job.counters.skipped
    rate = done / elapsed
    remaining = max(job.counters.discovered - done, 0)
    if job.status.is_final:
        return rate, 0.0
    eta = remaining / rate if rate > 0 else None
    return rate, eta
