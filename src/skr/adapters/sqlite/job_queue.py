"""The embedded JobQueue: jobs in the SQLite database, leased with an expiry."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid

from skr.adapters.sqlite.database import SQLiteDatabase
from skr.adapters.sqlite.page_writes import now_text
from skr.adapters.sqlite.rows import job_from_row
from skr.domain.errors import ConflictError, InvalidInputError, NotFoundError
from skr.domain.job_control import control_rule
from skr.domain.models import DEFAULT_TENANT, Job, JobCounters, JobKind, JobStatus


class SQLiteJobQueue:
    """Implements the JobQueue port on the embedded database."""

    def __init__(self, database: SQLiteDatabase, *, max_attempts: int) -> None:
        self._db = database
        self._max_attempts = max_attempts

    async def enqueue(
        self, kind: JobKind, collection_id: str, url: str, options: dict[str, object]
    ) -> Job:
        now = now_text()
        row = await self._db.write(
            lambda c: c.execute(
                "INSERT INTO jobs (id, kind, status, collection_id, url, options, counters, "
                "errors, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, '[]', ?, ?) "
                "RETURNING *",
                (
                    uuid.uuid4().hex, kind.value, JobStatus.QUEUED.value, collection_id, url,
                    json.dumps(options), json.dumps(JobCounters().as_dict()), now, now,
                ),
            ).fetchone()
        )  # fmt: skip
        return job_from_row(row)

    async def get(self, job_id: str) -> Job:
        row = await self._db.read(
            lambda c: c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        )
        if row is None:
            raise NotFoundError(f"there is no job with id {job_id!r}")
        return job_from_row(row)

    async def list_recent(self, limit: int, tenant: str | None = None) -> list[Job]:
        sql = (
            "SELECT * FROM jobs WHERE ? IS NULL "
            "OR coalesce(json_extract(options, '$.tenant'), ?) = ? ORDER BY seq DESC LIMIT ?"
        )
        args = (tenant, DEFAULT_TENANT, tenant, limit)
        rows = await self._db.read(lambda c: c.execute(sql, args).fetchall())
        return [job_from_row(r) for r in rows]

    async def lease(self, owner: str, lease_seconds: float) -> Job | None:
        def run(conn: sqlite3.Connection) -> Job | None:
            now = time.time()
            self._fail_exhausted(conn, now)
            row = conn.execute(
                "SELECT id FROM jobs WHERE (status = 'queued' AND coalesce(not_before, 0) <= ?) "
                "OR (status = 'running' AND lease_expires_at < ?) ORDER BY seq LIMIT 1",
                (now, now),
            ).fetchone()
            if row is None:
                return None
            stamp = now_text()
            leased = conn.execute(
                "UPDATE jobs SET status = 'running', lease_owner = ?, lease_expires_at = ?, "
                "attempts = attempts + 1, started_at = coalesce(started_at, ?), updated_at = ? "
                "WHERE id = ? RETURNING *",
                (owner, now + lease_seconds, stamp, stamp, row[0]),
            ).fetchone()
            return job_from_row(leased)

        return await self._db.write(run)

    def _fail_exhausted(self, conn: sqlite3.Connection, now: float) -> None:
        """A job whose lease expired on its last attempt failed: it kept killing workers."""
        conn.execute(
            "UPDATE jobs SET status = 'failed', lease_owner = NULL, lease_expires_at = NULL, "
            "reason = 'the job stopped without finishing ' || attempts || ' times', "
            "finished_at = ?, updated_at = ? "
            "WHERE status = 'running' AND lease_expires_at < ? AND attempts >= ?",
            (now_text(), now_text(), now, self._max_attempts),
        )

    async def heartbeat(self, job_id: str, owner: str, lease_seconds: float) -> JobStatus:
        def run(conn: sqlite3.Connection) -> JobStatus:
            row = conn.execute(
                "SELECT status, lease_owner FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"there is no job with id {job_id!r}")
            status = JobStatus(row[0])
            if status is JobStatus.RUNNING:
                if row[1] != owner:
                    raise ConflictError(f"job {job_id} is leased by another worker")
                conn.execute(
                    "UPDATE jobs SET lease_expires_at = ? WHERE id = ?",
                    (time.time() + lease_seconds, job_id),
                )
            return status

        return await self._db.write(run)

    async def save_progress(self, job: Job) -> None:
        counters = json.dumps(job.counters.as_dict())
        errors = json.dumps([{"url": e.url, "reason": e.reason} for e in job.errors[-200:]])
        await self._db.write(
            lambda c: c.execute(
                "UPDATE jobs SET counters = ?, errors = ?, updated_at = ? WHERE id = ?",
                (counters, errors, now_text(), job.id),
            )
        )

    async def finish(self, job_id: str, owner: str, status: JobStatus, reason: str | None) -> None:
        if not status.is_final:
            raise InvalidInputError(f"{status} is not a final status")
        now = now_text()
        await self._db.write(
            lambda c: c.execute(
                "UPDATE jobs SET status = ?, reason = ?, lease_owner = NULL, "
                "lease_expires_at = NULL, finished_at = ?, updated_at = ? "
                "WHERE id = ? AND lease_owner = ? AND status = 'running'",
                (status.value, reason, now, now, job_id, owner),
            )
        )

    async def retry_later(
        self, job_id: str, owner: str, reason: str, delay_seconds: float
    ) -> JobStatus:
        def run(conn: sqlite3.Connection) -> JobStatus:
            row = conn.execute(
                "SELECT attempts FROM jobs WHERE id = ? AND lease_owner = ? AND status = 'running'",
                (job_id, owner),
            ).fetchone()
            if row is None:
                raise ConflictError(f"job {job_id} is not leased by {owner}")
            final = row[0] >= self._max_attempts
            status = JobStatus.FAILED if final else JobStatus.QUEUED
            stamp = now_text()
            conn.execute(
                "UPDATE jobs SET status = ?, reason = ?, lease_owner = NULL, "
                "lease_expires_at = NULL, not_before = ?, updated_at = ?, "
                "finished_at = CASE WHEN ? THEN ? ELSE finished_at END WHERE id = ?",
                (status.value, reason, time.time() + delay_seconds, stamp, final, stamp, job_id),
            )
            return status

        return await self._db.write(run)

    async def control(self, job_id: str, action: str) -> Job:
        allowed, target = control_rule(action)

        def run(conn: sqlite3.Connection) -> Job:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"there is no job with id {job_id!r}")
            current = JobStatus(row["status"])
            if current not in allowed:
                raise ConflictError(f"a {current} job cannot be {action}d")
            finished = now_text() if target is JobStatus.CANCELLED else None
            updated = conn.execute(
                "UPDATE jobs SET status = ?, lease_owner = NULL, lease_expires_at = NULL, "
                "finished_at = coalesce(?, finished_at), updated_at = ? WHERE id = ? RETURNING *",
                (target.value, finished, now_text(), job_id),
            ).fetchone()
            return job_from_row(updated)

        return await self._db.write(run)

    async def depth(self) -> int:
        row = await self._db.read(
            lambda c: c.execute("SELECT count(*) FROM jobs WHERE status = 'queued'").fetchone()
        )
        return int(row[0])

    async def count_active(self, api_key_id: str) -> int:
        sql = (
            "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running', 'paused') "
            "AND json_extract(options, '$.api_key') = ?"
        )
        row = await self._db.read(lambda c: c.execute(sql, (api_key_id,)).fetchone())
        return int(row[0])

    async def oldest_queued_age_seconds(self) -> float:
        # updated_at of a queued job is when it was queued or re-queued (ISO text, UTC);
        # not_before (Unix seconds) is when its retry delay ends
        def run(conn: sqlite3.Connection) -> float:
            now = time.time()
            row = conn.execute(
                "SELECT min(max((julianday(updated_at) - 2440587.5) * 86400.0, "
                "coalesce(not_before, 0))) FROM jobs "
                "WHERE status = 'queued' AND coalesce(not_before, 0) <= ?",
                (now,),
            ).fetchone()
            return 0.0 if row[0] is None else max(0.0, now - float(row[0]))

        return await self._db.read(run)
