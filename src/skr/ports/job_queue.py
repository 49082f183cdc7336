"""The JobQueue port: durable jobs with leases, progress and control."""

from __future__ import annotations

from typing import Protocol

from skr.domain.models import Job, JobKind, JobStatus


class JobQueue(Protocol):
    async def enqueue(
        self, kind: JobKind, collection_id: str, url: str, options: dict[str, object]
    ) -> Job: ...

    async def get(self, job_id: str) -> Job:
        """``NotFoundError`` for an unknown id."""
        ...

    async def list_recent(self, limit: int, tenant: str | None = None) -> list[Job]:
        """Newest first; only ``tenant``'s jobs (its ``options["tenant"]``) when given."""
        ...

    async def lease(self, owner: str, lease_seconds: float) -> Job | None:
        """Take the oldest queued job, or a running one whose lease expired, and
        mark it running for ``owner`` until the lease expires."""
        ...

    async def heartbeat(self, job_id: str, owner: str, lease_seconds: float) -> JobStatus:
        """Extend the lease; returns the job's status so a worker sees pause or cancel.
        A lease that now belongs to someone else gives ``ConflictError``."""
        ...

    async def save_progress(self, job: Job) -> None:
        """Store the job's counters and errors."""
        ...

    async def finish(self, job_id: str, owner: str, status: JobStatus, reason: str | None) -> None:
        """End the job as succeeded, failed or cancelled and release its lease."""
        ...

    async def retry_later(
        self, job_id: str, owner: str, reason: str, delay_seconds: float
    ) -> JobStatus:
        """A transient failure: put the job back in the queue, not to be leased before
        ``delay_seconds`` pass; a job out of attempts fails with ``reason`` instead.
        Returns the job's new status."""
        ...

    async def control(self, job_id: str, action: str) -> Job:
        """``pause``, ``resume`` or ``cancel``; ``ConflictError`` when the job's
        status does not allow it."""
        ...

    async def depth(self) -> int:
        """Jobs waiting to run."""
        ...

    async def count_active(self, api_key_id: str) -> int:
        """Jobs queued, running or paused that the API key ``api_key_id`` started (its
        ``options["api_key"]``)."""
        ...

    async def oldest_queued_age_seconds(self) -> float:
        """How long the longest-waiting runnable queued job has waited: since it was
        queued (or re-queued: a retry, a resume), or since its retry delay ended; ``0.0``
        when no job is waiting. A job still inside its retry delay is not waiting."""
        ...
