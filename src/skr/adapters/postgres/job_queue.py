"""The scale-out JobQueue: jobs in PostgreSQL, leased with SKIP LOCKED on the database clock."""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from skr.adapters.postgres.database import Connection, PostgresDatabase
from skr.adapters.postgres.rows import job_from_row
from skr.domain.errors import (
    ConflictError,
    DependencyError,
    InvalidInputError,
    NotFoundError,
    SKRError,
)
from skr.domain.job_control import control_rule
from skr.domain.models import DEFAULT_TENANT, Job, JobCounters, JobKind, JobStatus

# Every time comparison uses now(), the database's clock: workers on machines whose
# clocks disagree still agree on when a lease expires. Inside one transaction now() is
# fixed, so failing exhausted jobs and leasing see the same instant.
_FAIL_EXHAUSTED = """
UPDATE jobs SET status = 'failed', lease_owner = NULL, lease_expires_at = NULL,
    reason = 'the job stopped without finishing ' || attempts || ' times',
    finished_at = now(), updated_at = now()
WHERE id IN (
    SELECT id FROM jobs
    WHERE status = 'running' AND lease_expires_at < now() AND attempts >= %(max_attempts)s
    ORDER BY seq FOR UPDATE SKIP LOCKED
)
"""

_LEASE = """
UPDATE jobs SET status = 'running', lease_owner = %(owner)s,
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
    attempts = attempts + 1, started_at = coalesce(started_at, now()), updated_at = now()
WHERE id = (
    SELECT id FROM jobs
    WHERE (status = 'queued' AND (not_before IS NULL OR not_before <= now()))
       OR (status = 'running' AND lease_expires_at < now())
    ORDER BY seq FOR UPDATE SKIP LOCKED LIMIT 1
)
RETURNING *
"""

_RETRY_LATER = """
UPDATE jobs SET
    status = CASE WHEN attempts >= %(max_attempts)s THEN 'failed' ELSE 'queued' END,
    reason = %(reason)s, lease_owner = NULL, lease_expires_at = NULL,
    not_before = now() + make_interval(secs => %(delay_seconds)s), updated_at = now(),
    finished_at = CASE WHEN attempts >= %(max_attempts)s THEN now() ELSE finished_at END
WHERE id = %(id)s AND lease_owner = %(owner)s AND status = 'running'
RETURNING status
"""


def _not_found(job_id: str) -> NotFoundError:
    return NotFoundError(f"there is no job with id {job_id!r}")


def _dependency_error(exc: psycopg.Error) -> SKRError:
    return DependencyError(f"the job queue in PostgreSQL failed: {exc}")


class PostgresJobQueue:
    """Implements the JobQueue port on PostgreSQL for many workers on many machines."""

    def __init__(self, database: PostgresDatabase, *, max_attempts: int) -> None:
        self._db = database
        self._max_attempts = max_attempts

    def _connection(self, *, transaction: bool = False) -> AbstractAsyncContextManager[Connection]:
        """A connection whose driver errors become ``DependencyError``."""
        return self._db.translated(_dependency_error, transaction=transaction)

    async def _fetch_one(self, query: str, params: dict[str, object]) -> dict[str, Any] | None:
        async with self._connection() as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchone()

    async def enqueue(
        self, kind: JobKind, collection_id: str, url: str, options: dict[str, object]
    ) -> Job:
        row = await self._fetch_one(
            "INSERT INTO jobs (id, kind, status, collection_id, url, options, counters) "
            "VALUES (%(id)s, %(kind)s, 'queued', %(collection_id)s, %(url)s, %(options)s, "
            "%(counters)s) RETURNING *",
            {
                "id": uuid.uuid4().hex,
                "kind": kind.value,
                "collection_id": collection_id,
                "url": url,
                "options": Jsonb(options),
                "counters": Jsonb(JobCounters().as_dict()),
            },
        )
        if row is None:  # pragma: no cover - INSERT ... RETURNING always yields the row
            raise DependencyError("PostgreSQL did not return the new job")
        return job_from_row(row)

    async def get(self, job_id: str) -> Job:
        row = await self._fetch_one("SELECT * FROM jobs WHERE id = %(id)s", {"id": job_id})
        if row is None:
            raise _not_found(job_id)
        return job_from_row(row)

    async def list_recent(self, limit: int, tenant: str | None = None) -> list[Job]:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT * FROM jobs WHERE %(tenant)s::text IS NULL "
                "OR coalesce(options->>'tenant', %(default)s) = %(tenant)s "
                "ORDER BY seq DESC LIMIT %(limit)s",
                {"limit": limit, "tenant": tenant, "default": DEFAULT_TENANT},
            )
            rows = await cursor.fetchall()
        return [job_from_row(r) for r in rows]

    async def lease(self, owner: str, lease_seconds: float) -> Job | None:
        async with self._connection(transaction=True) as conn:
            await conn.execute(_FAIL_EXHAUSTED, {"max_attempts": self._max_attempts})
            cursor = await conn.execute(_LEASE, {"owner": owner, "lease_seconds": lease_seconds})
            row = await cursor.fetchone()
        return job_from_row(row) if row is not None else None

    async def heartbeat(self, job_id: str, owner: str, lease_seconds: float) -> JobStatus:
        # the common case, a live lease of this owner, costs one statement
        extended = await self._fetch_one(
            "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => %(secs)s) "
            "WHERE id = %(id)s AND status = 'running' AND lease_owner = %(owner)s "
            "RETURNING status",
            {"id": job_id, "owner": owner, "secs": lease_seconds},
        )
        if extended is not None:
            return JobStatus(extended["status"])
        row = await self._fetch_one("SELECT status FROM jobs WHERE id = %(id)s", {"id": job_id})
        if row is None:
            raise _not_found(job_id)
        status = JobStatus(row["status"])
        if status is JobStatus.RUNNING:
            # running but not (or no longer, a moment ago) under this owner's lease
            raise ConflictError(f"job {job_id} is leased by another worker")
        return status

    async def save_progress(self, job: Job) -> None:
        errors = [{"url": e.url, "reason": e.reason} for e in job.errors[-200:]]
        async with self._connection() as conn:
            await conn.execute(
                "UPDATE jobs SET counters = %(counters)s, errors = %(errors)s, updated_at = now() "
                "WHERE id = %(id)s",
                {"counters": Jsonb(job.counters.as_dict()), "errors": Jsonb(errors), "id": job.id},
            )

    async def finish(self, job_id: str, owner: str, status: JobStatus, reason: str | None) -> None:
        if not status.is_final:
            raise InvalidInputError(f"{status} is not a final status")
        async with self._connection() as conn:
            await conn.execute(
                "UPDATE jobs SET status = %(status)s, reason = %(reason)s, lease_owner = NULL, "
                "lease_expires_at = NULL, finished_at = now(), updated_at = now() "
                "WHERE id = %(id)s AND lease_owner = %(owner)s AND status = 'running'",
                {"status": status.value, "reason": reason, "id": job_id, "owner": owner},
            )

    async def retry_later(
        self, job_id: str, owner: str, reason: str, delay_seconds: float
    ) -> JobStatus:
        row = await self._fetch_one(
            _RETRY_LATER,
            {
                "id": job_id,
                "owner": owner,
                "reason": reason,
                "delay_seconds": delay_seconds,
                "max_attempts": self._max_attempts,
            },
        )
        if row is None:
            raise ConflictError(f"job {job_id} is not leased by {owner}")
        return JobStatus(row["status"])

    async def control(self, job_id: str, action: str) -> Job:
        allowed, target = control_rule(action)
        async with self._connection(transaction=True) as conn:
            cursor = await conn.execute(
                "SELECT status FROM jobs WHERE id = %(id)s FOR UPDATE", {"id": job_id}
            )
            row = await cursor.fetchone()
            if row is None:
                raise _not_found(job_id)
            current = JobStatus(row["status"])
            if current not in allowed:
                raise ConflictError(f"a {current} job cannot be {action}d")
            cursor = await conn.execute(
                "UPDATE jobs SET status = %(status)s, lease_owner = NULL, lease_expires_at = NULL, "
                "finished_at = CASE WHEN %(final)s THEN now() ELSE finished_at END, "
                "updated_at = now() WHERE id = %(id)s RETURNING *",
                {"status": target.value, "final": target is JobStatus.CANCELLED, "id": job_id},
            )
            updated = await cursor.fetchone()
        if updated is None:  # pragma: no cover - the row is locked above
            raise _not_found(job_id)
        return job_from_row(updated)

    async def depth(self) -> int:
        row = await self._fetch_one("SELECT count(*) AS n FROM jobs WHERE status = 'queued'", {})
        return int(row["n"]) if row is not None else 0

    async def count_active(self, api_key_id: str) -> int:
        row = await self._fetch_one(
            "SELECT count(*) AS n FROM jobs WHERE status IN ('queued', 'running', 'paused') "
            "AND options->>'api_key' = %(key)s",
            {"key": api_key_id},
        )
        return int(row["n"]) if row is not None else 0

    async def oldest_queued_age_seconds(self) -> float:
        # updated_at of a queued job is when it was queued or re-queued
        row = await self._fetch_one(
            "SELECT extract(epoch FROM now() - min(greatest(updated_at, not_before))) AS age "
            "FROM jobs WHERE status = 'queued' AND (not_before IS NULL OR not_before <= now())",
            {},
        )
        age = None if row is None else row["age"]
        return 0.0 if age is None else max(0.0, float(age))
