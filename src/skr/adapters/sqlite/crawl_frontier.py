"""The embedded CrawlFrontier: a crawl job's URLs in the SQLite database, leased with an expiry."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from skr.adapters.sqlite.database import SQLiteDatabase
from skr.domain.errors import InvalidInputError, NotFoundError
from skr.domain.models import JobError, JobKind
from skr.ports.crawl_frontier import FrontierEntry, FrontierItem, FrontierState

# Times are Unix seconds (REAL), as in the jobs table; lastmod is ISO 8601 text in UTC.
# The first condition repeats the partial index's, so that SQLite uses that index.
_DUE = """
SELECT url, depth, lastmod, attempts FROM crawl_frontier
WHERE state IN ('pending', 'leased') AND job_id = ?
    AND ((state = 'pending' AND coalesce(not_before, 0) <= ?)
        OR (state = 'leased' AND lease_expires_at < ?))
ORDER BY depth, seq
LIMIT ?
"""

_SEED = """
INSERT INTO crawl_frontier (job_id, url, seq, depth, lastmod)
SELECT ?, p.url, ? + row_number() OVER (ORDER BY p.seq), p.depth, p.lastmod
FROM crawl_frontier AS p
WHERE p.job_id = ? AND p.state IN ('indexed', 'unchanged')
    AND NOT EXISTS (SELECT 1 FROM crawl_frontier AS c WHERE c.job_id = ? AND c.url = p.url)
ORDER BY p.seq
LIMIT ?
"""


def _lastmod_text(lastmod: datetime | None) -> str | None:
    """A sitemap date as stored: UTC ISO text (a naive datetime is taken to be UTC)."""
    if lastmod is None:
        return None
    aware = lastmod if lastmod.tzinfo is not None else lastmod.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def _lastmod_from_text(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None


def _job_seq(conn: sqlite3.Connection, job_id: str) -> int:
    row = conn.execute("SELECT seq FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"there is no job with id {job_id!r}")
    return int(row[0])


def _size_and_last_seq(conn: sqlite3.Connection, job_id: str) -> tuple[int, int]:
    row = conn.execute(
        "SELECT count(*), coalesce(max(seq), 0) FROM crawl_frontier WHERE job_id = ?", (job_id,)
    ).fetchone()
    return int(row[0]), int(row[1])


class SQLiteCrawlFrontier:
    """Implements the CrawlFrontier port on the embedded database. Every change runs in
    one transaction on the writer thread, which is what makes ``lease`` atomic."""

    def __init__(self, database: SQLiteDatabase) -> None:
        self._db = database

    async def add(self, job_id: str, entries: Sequence[FrontierEntry], max_total: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            _job_seq(conn, job_id)
            size, last_seq = _size_and_last_seq(conn, job_id)
            added = 0
            for entry in entries:
                if size + added >= max_total:
                    break
                inserted = conn.execute(
                    "INSERT INTO crawl_frontier (job_id, url, seq, depth, lastmod) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (job_id, entry.url, last_seq + added + 1, entry.depth,
                     _lastmod_text(entry.lastmod)),
                )  # fmt: skip
                added += inserted.rowcount
            return added

        return await self._db.write(run)

    async def lease(
        self, job_id: str, owner: str, lease_seconds: float, limit: int
    ) -> list[FrontierItem]:
        def run(conn: sqlite3.Connection) -> list[FrontierItem]:
            now = time.time()
            rows = conn.execute(_DUE, (job_id, now, now, limit)).fetchall()
            conn.executemany(
                "UPDATE crawl_frontier SET state = 'leased', lease_owner = ?, "
                "lease_expires_at = ? WHERE job_id = ? AND url = ?",
                [(owner, now + lease_seconds, job_id, row["url"]) for row in rows],
            )
            return [
                FrontierItem(
                    url=row["url"],
                    depth=row["depth"],
                    lastmod=_lastmod_from_text(row["lastmod"]),
                    attempts=row["attempts"],
                )
                for row in rows
            ]

        return await self._db.write(run)

    async def finish(
        self, job_id: str, url: str, owner: str, state: FrontierState, error: str | None = None
    ) -> None:
        if not state.is_final:
            raise InvalidInputError(f"{state} is not a final state")
        await self._db.write(
            lambda c: c.execute(
                "UPDATE crawl_frontier SET state = ?, last_error = coalesce(?, last_error), "
                "lease_owner = NULL, lease_expires_at = NULL "
                "WHERE job_id = ? AND url = ? AND lease_owner = ? AND state = 'leased'",
                (state.value, error, job_id, url, owner),
            )
        )

    async def retry_later(
        self, job_id: str, url: str, owner: str, delay_seconds: float, error: str
    ) -> None:
        await self._db.write(
            lambda c: c.execute(
                "UPDATE crawl_frontier SET state = 'pending', attempts = attempts + 1, "
                "last_error = ?, not_before = ?, lease_owner = NULL, lease_expires_at = NULL "
                "WHERE job_id = ? AND url = ? AND lease_owner = ? AND state = 'leased'",
                (error, time.time() + delay_seconds, job_id, url, owner),
            )
        )

    async def release(self, job_id: str, owner: str) -> int:
        return await self._hand_back(job_id, owner, others=False)

    async def take_over(self, job_id: str, owner: str) -> int:
        return await self._hand_back(job_id, owner, others=True)

    async def _hand_back(self, job_id: str, owner: str, *, others: bool) -> int:
        """The job's URLs leased by ``owner`` (or, with ``others``, by anyone else) back
        to pending, due now."""
        return await self._db.write(
            lambda c: (
                c.execute(
                    "UPDATE crawl_frontier SET state = 'pending', not_before = NULL, "
                    "lease_owner = NULL, lease_expires_at = NULL "
                    "WHERE job_id = ? AND (lease_owner = ?) <> ? AND state = 'leased'",
                    (job_id, owner, others),
                ).rowcount
            )
        )

    async def counts(self, job_id: str) -> dict[FrontierState, int]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT state, count(*) FROM crawl_frontier WHERE job_id = ? GROUP BY state",
                (job_id,),
            ).fetchall()
        )
        return {FrontierState(row[0]): int(row[1]) for row in rows}

    async def errors(self, job_id: str, limit: int) -> list[JobError]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT url, last_error FROM crawl_frontier WHERE job_id = ? AND state = 'failed' "
                "ORDER BY seq LIMIT ?",
                (job_id, limit),
            ).fetchall()
        )
        return [JobError(url=row[0], reason=row[1] or "") for row in rows]

    async def seconds_until_due(self, job_id: str) -> float | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT min(CASE WHEN state = 'pending' THEN coalesce(not_before, 0) "
                "ELSE lease_expires_at END) FROM crawl_frontier "
                "WHERE state IN ('pending', 'leased') AND job_id = ?",
                (job_id,),
            ).fetchone()
        )
        if row[0] is None:
            return None
        return max(0.0, float(row[0]) - time.time())

    async def seed_from_previous(
        self, job_id: str, collection_id: str, root_url: str, max_total: int
    ) -> int:
        def run(conn: sqlite3.Connection) -> int:
            # "previous" is the newest crawl enqueued before this one: a crawl queued
            # after it has not taught us anything about the site yet
            previous = conn.execute(
                "SELECT id FROM jobs WHERE kind = ? AND collection_id = ? AND url = ? "
                "AND seq < ? ORDER BY seq DESC LIMIT 1",
                (JobKind.CRAWL.value, collection_id, root_url, _job_seq(conn, job_id)),
            ).fetchone()
            if previous is None:
                return 0
            size, last_seq = _size_and_last_seq(conn, job_id)
            if size >= max_total:
                return 0
            inserted = conn.execute(
                _SEED, (job_id, last_seq, previous[0], job_id, max_total - size)
            )
            return int(inserted.rowcount)

        return await self._db.write(run)
