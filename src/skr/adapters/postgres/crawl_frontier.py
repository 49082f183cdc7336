"""The scale-out CrawlFrontier: a crawl job's URLs in PostgreSQL, leased with SKIP LOCKED."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

import psycopg

from skr.adapters.postgres.database import Connection, PostgresDatabase
from skr.adapters.postgres.rows import as_utc, frontier_item_from_row
from skr.domain.errors import DependencyError, InvalidInputError, NotFoundError, SKRError
from skr.domain.models import JobError, JobKind
from skr.ports.crawl_frontier import FrontierEntry, FrontierItem, FrontierState

# As in the job queue, every time comparison uses now(), the database's clock, so that
# workers whose clocks disagree still agree on when a lease expires.

_ADD = """
INSERT INTO crawl_frontier (job_id, url, seq, depth, lastmod)
SELECT %(job_id)s, e.url, %(last_seq)s + e.ord, e.depth, e.lastmod
FROM unnest(%(urls)s::text[], %(depths)s::integer[], %(lastmods)s::timestamptz[])
    WITH ORDINALITY AS e (url, depth, lastmod, ord)
WHERE NOT EXISTS (
    SELECT 1 FROM crawl_frontier AS f WHERE f.job_id = %(job_id)s AND f.url = e.url
)
ORDER BY e.ord
LIMIT %(room)s
ON CONFLICT DO NOTHING
"""

# The first condition of the inner query repeats the partial index's, so it is used.
_LEASE = """
UPDATE crawl_frontier SET state = 'leased', lease_owner = %(owner)s,
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE (job_id, url) IN (
    SELECT job_id, url FROM crawl_frontier
    WHERE state IN ('pending', 'leased') AND job_id = %(job_id)s
        AND ((state = 'pending' AND (not_before IS NULL OR not_before <= now()))
            OR (state = 'leased' AND lease_expires_at < now()))
    ORDER BY depth, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING url, depth, lastmod, attempts, seq
"""

_SECONDS_UNTIL_DUE = """
SELECT extract(epoch FROM min(
    CASE WHEN state = 'pending' THEN coalesce(not_before, now()) ELSE lease_expires_at END
) - now()) AS seconds
FROM crawl_frontier
WHERE state IN ('pending', 'leased') AND job_id = %(job_id)s
"""

_PREVIOUS_CRAWL = """
SELECT id FROM jobs
WHERE kind = %(kind)s AND collection_id = %(collection_id)s AND url = %(url)s
    AND seq < %(job_seq)s
ORDER BY seq DESC
LIMIT 1
"""

_SEED = """
INSERT INTO crawl_frontier (job_id, url, seq, depth, lastmod)
SELECT %(job_id)s, p.url, %(last_seq)s + row_number() OVER (ORDER BY p.seq), p.depth, p.lastmod
FROM crawl_frontier AS p
WHERE p.job_id = %(previous_id)s AND p.state IN ('indexed', 'unchanged')
    AND NOT EXISTS (
        SELECT 1 FROM crawl_frontier AS c WHERE c.job_id = %(job_id)s AND c.url = p.url
    )
ORDER BY p.seq
LIMIT %(room)s
ON CONFLICT DO NOTHING
"""


def _first_of_each_url(entries: Sequence[FrontierEntry]) -> list[FrontierEntry]:
    """The entries without repeated URLs: a URL met twice keeps its first depth."""
    seen: set[str] = set()
    unique: list[FrontierEntry] = []
    for entry in entries:
        if entry.url not in seen:
            seen.add(entry.url)
            unique.append(entry)
    return unique


def _dependency_error(exc: psycopg.Error) -> SKRError:
    return DependencyError(f"the crawl frontier in PostgreSQL failed: {exc}")


class PostgresCrawlFrontier:
    """Implements the CrawlFrontier port on PostgreSQL for many workers on many machines."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    def _connection(self, *, transaction: bool = False) -> AbstractAsyncContextManager[Connection]:
        """A connection whose driver errors become ``DependencyError``."""
        return self._db.translated(_dependency_error, transaction=transaction)

    @staticmethod
    async def _lock_job(conn: Connection, job_id: str) -> tuple[int, int, int]:
        """Lock the job's row, so that adds to its frontier run one at a time and the cap
        holds; returns the job's seq, the frontier's size and its last seq."""
        cursor = await conn.execute(
            "SELECT seq FROM jobs WHERE id = %(id)s FOR NO KEY UPDATE", {"id": job_id}
        )
        job = await cursor.fetchone()
        if job is None:
            raise NotFoundError(f"there is no job with id {job_id!r}")
        cursor = await conn.execute(
            "SELECT count(*) AS size, coalesce(max(seq), 0) AS last_seq FROM crawl_frontier "
            "WHERE job_id = %(id)s",
            {"id": job_id},
        )
        frontier = await cursor.fetchone()
        if frontier is None:  # pragma: no cover - an aggregate always yields a row
            raise DependencyError("PostgreSQL did not count the frontier")
        return int(job["seq"]), int(frontier["size"]), int(frontier["last_seq"])

    async def add(self, job_id: str, entries: Sequence[FrontierEntry], max_total: int) -> int:
        unique = _first_of_each_url(entries)
        async with self._connection(transaction=True) as conn:
            _, size, last_seq = await self._lock_job(conn, job_id)
            if size >= max_total or not unique:
                return 0
            cursor = await conn.execute(
                _ADD,
                {
                    "job_id": job_id,
                    "last_seq": last_seq,
                    "urls": [e.url for e in unique],
                    "depths": [e.depth for e in unique],
                    "lastmods": [as_utc(e.lastmod) for e in unique],
                    "room": max_total - size,
                },
            )
            return cursor.rowcount

    async def lease(
        self, job_id: str, owner: str, lease_seconds: float, limit: int
    ) -> list[FrontierItem]:
        async with self._connection() as conn:
            cursor = await conn.execute(
                _LEASE,
                {"job_id": job_id, "owner": owner, "lease_seconds": lease_seconds, "limit": limit},
            )
            rows = await cursor.fetchall()
        # RETURNING keeps no order
        rows.sort(key=lambda row: (row["depth"], row["seq"]))
        return [frontier_item_from_row(row) for row in rows]

    async def finish(
        self, job_id: str, url: str, owner: str, state: FrontierState, error: str | None = None
    ) -> None:
        if not state.is_final:
            raise InvalidInputError(f"{state} is not a final state")
        async with self._connection() as conn:
            await conn.execute(
                "UPDATE crawl_frontier SET state = %(state)s, "
                "last_error = coalesce(%(error)s, last_error), "
                "lease_owner = NULL, lease_expires_at = NULL "
                "WHERE job_id = %(job_id)s AND url = %(url)s AND lease_owner = %(owner)s "
                "AND state = 'leased'",
                {
                    "state": state.value,
                    "error": error,
                    "job_id": job_id,
                    "url": url,
                    "owner": owner,
                },
            )

    async def retry_later(
        self, job_id: str, url: str, owner: str, delay_seconds: float, error: str
    ) -> None:
        async with self._connection() as conn:
            await conn.execute(
                "UPDATE crawl_frontier SET state = 'pending', attempts = attempts + 1, "
                "last_error = %(error)s, not_before = now() + make_interval(secs => %(delay)s), "
                "lease_owner = NULL, lease_expires_at = NULL "
                "WHERE job_id = %(job_id)s AND url = %(url)s AND lease_owner = %(owner)s "
                "AND state = 'leased'",
                {"error": error, "delay": delay_seconds, "job_id": job_id, "url": url,
                 "owner": owner},
            )  # fmt: skip

    async def release(self, job_id: str, owner: str) -> int:
        return await self._hand_back(job_id, owner, others=False)

    async def take_over(self, job_id: str, owner: str) -> int:
        return await self._hand_back(job_id, owner, others=True)

    async def _hand_back(self, job_id: str, owner: str, *, others: bool) -> int:
        """The job's URLs leased by ``owner`` (or, with ``others``, by anyone else) back
        to pending, due now."""
        async with self._connection() as conn:
            cursor = await conn.execute(
                "UPDATE crawl_frontier SET state = 'pending', not_before = NULL, "
                "lease_owner = NULL, lease_expires_at = NULL WHERE job_id = %(job_id)s "
                "AND (lease_owner = %(owner)s) <> %(others)s AND state = 'leased'",
                {"job_id": job_id, "owner": owner, "others": others},
            )
            return cursor.rowcount

    async def counts(self, job_id: str) -> dict[FrontierState, int]:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT state, count(*) AS n FROM crawl_frontier WHERE job_id = %(job_id)s "
                "GROUP BY state",
                {"job_id": job_id},
            )
            rows = await cursor.fetchall()
        return {FrontierState(row["state"]): int(row["n"]) for row in rows}

    async def errors(self, job_id: str, limit: int) -> list[JobError]:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT url, last_error FROM crawl_frontier "
                "WHERE job_id = %(job_id)s AND state = 'failed' ORDER BY seq LIMIT %(limit)s",
                {"job_id": job_id, "limit": limit},
            )
            rows = await cursor.fetchall()
        return [JobError(url=row["url"], reason=row["last_error"] or "") for row in rows]

    async def seconds_until_due(self, job_id: str) -> float | None:
        async with self._connection() as conn:
            cursor = await conn.execute(_SECONDS_UNTIL_DUE, {"job_id": job_id})
            row = await cursor.fetchone()
        if row is None or row["seconds"] is None:
            return None
        return max(0.0, float(row["seconds"]))

    async def seed_from_previous(
        self, job_id: str, collection_id: str, root_url: str, max_total: int
    ) -> int:
        async with self._connection(transaction=True) as conn:
            job_seq, size, last_seq = await self._lock_job(conn, job_id)
            # "previous" is the newest crawl enqueued before this one: a crawl queued
            # after it has not taught us anything about the site yet
            cursor = await conn.execute(
                _PREVIOUS_CRAWL,
                {"kind": JobKind.CRAWL.value, "collection_id": collection_id, "url": root_url,
                 "job_seq": job_seq},
            )  # fmt: skip
            previous = await cursor.fetchone()
            if previous is None or size >= max_total:
                return 0
            cursor = await conn.execute(
                _SEED,
                {"job_id": job_id, "previous_id": previous["id"], "last_seq": last_seq,
                 "room": max_total - size},
            )  # fmt: skip
            return cursor.rowcount
