"""An in-memory JobQueue for unit tests, with the same lease rules as the real ones."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from skr.domain.errors import ConflictError, InvalidInputError, NotFoundError
from skr.domain.job_control import control_rule
from skr.domain.models import Job, JobKind, JobStatus


class InMemoryJobQueue:
    def __init__(self, max_attempts: int = 3) -> None:
        self.jobs: dict[str, Job] = {}
        self.expiry: dict[str, float] = {}
        self.not_before: dict[str, float] = {}
        self.max_attempts = max_attempts

    async def enqueue(
        self, kind: JobKind, collection_id: str, url: str, options: dict[str, object]
    ) -> Job:
        now = datetime.now(UTC)
        job = Job(uuid.uuid4().hex, kind, JobStatus.QUEUED, collection_id, url, now, now)
        job.options = dict(options)
        self.jobs[job.id] = job
        return job

    async def get(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise NotFoundError(f"there is no job with id {job_id!r}")
        return self.jobs[job_id]

    async def list_recent(self, limit: int, tenant: str | None = None) -> list[Job]:
        jobs = [j for j in reversed(self.jobs.values()) if tenant in (None, j.tenant)]
        return jobs[:limit]

    async def lease(self, owner: str, lease_seconds: float) -> Job | None:
        now = time.time()
        for job in self.jobs.values():
            expired = job.status is JobStatus.RUNNING and self.expiry.get(job.id, 0) < now
            if expired and job.attempts >= self.max_attempts:
                job.status = JobStatus.FAILED
                job.reason = f"the job stopped without finishing {job.attempts} times"
                continue
            waiting = self.not_before.get(job.id, 0) > now
            if (job.status is JobStatus.QUEUED and not waiting) or expired:
                job.status = JobStatus.RUNNING
                job.lease_owner = owner
                job.attempts += 1
                job.started_at = job.started_at or datetime.now(UTC)
                self.expiry[job.id] = now + lease_seconds
                return job
        return None

    async def heartbeat(self, job_id: str, owner: str, lease_seconds: float) -> JobStatus:
        job = await self.get(job_id)
        if job.status is JobStatus.RUNNING:
            if job.lease_owner != owner:
                raise ConflictError(f"job {job_id} is leased by another worker")
            self.expiry[job_id] = time.time() + lease_seconds
        return job.status

    async def save_progress(self, job: Job) -> None:
        stored = await self.get(job.id)
        stored.counters = job.counters
        stored.errors = list(job.errors)

    async def finish(self, job_id: str, owner: str, status: JobStatus, reason: str | None) -> None:
        if not status.is_final:
            raise InvalidInputError(f"{status} is not a final status")
        job = await self.get(job_id)
        if job.lease_owner == owner and job.status is JobStatus.RUNNING:
            job.status, job.reason, job.lease_owner = status, reason, None
            job.finished_at = datetime.now(UTC)

    async def retry_later(
        self, job_id: str, owner: str, reason: str, delay_seconds: float
    ) -> JobStatus:
        job = await self.get(job_id)
        if job.lease_owner != owner or job.status is not JobStatus.RUNNING:
            raise ConflictError(f"job {job_id} is not leased by {owner}")
        final = job.attempts >= self.max_attempts
        job.status = JobStatus.FAILED if final else JobStatus.QUEUED
        job.reason, job.lease_owner = reason, None
        job.updated_at = datetime.now(UTC)
        if final:
            job.finished_at = datetime.now(UTC)
        self.not_before[job_id] = time.time() + delay_seconds
        return job.status

    async def control(self, job_id: str, action: str) -> Job:
        allowed, target = control_rule(action)
        job = await self.get(job_id)
        if job.status not in allowed:
            raise ConflictError(f"a {job.status} job cannot be {action}d")
        job.status, job.lease_owner = target, None
        job.updated_at = datetime.now(UTC)
        return job

    async def depth(self) -> int:
        return sum(1 for j in self.jobs.values() if j.status is JobStatus.QUEUED)

    async def count_active(self, api_key_id: str) -> int:
        active = {JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED}
        return sum(
            1
            for j in self.jobs.values()
            if j.status in active and j.options.get("api_key") == api_key_id
        )

    async def oldest_queued_age_seconds(self) -> float:
        # a queued job's updated_at is when it was queued or re-queued
        now = time.time()
        since = [
            max(j.updated_at.timestamp(), self.not_before.get(j.id, 0.0))
            for j in self.jobs.values()
            if j.status is JobStatus.QUEUED and self.not_before.get(j.id, 0.0) <= now
        ]
        return max(0.0, now - min(since)) if since else 0.0
