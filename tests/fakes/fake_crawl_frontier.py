"""An in-memory CrawlFrontier for unit tests, with the same rules as the real ones."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from skr.domain.errors import InvalidInputError, NotFoundError
from skr.domain.models import JobError, JobKind
from skr.ports.crawl_frontier import FrontierEntry, FrontierItem, FrontierState
from tests.fakes.fake_job_queue import InMemoryJobQueue


@dataclass(slots=True)
class FrontierRow:
    url: str
    depth: int
    lastmod: datetime | None
    state: FrontierState = FrontierState.PENDING
    attempts: int = 0
    last_error: str | None = None
    lease_owner: str | None = None
    lease_expires_at: float = 0.0
    not_before: float = 0.0


def _as_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC)


class InMemoryCrawlFrontier:
    """Rows per job in dicts (which keep the order of adding). Given the in-memory job
    queue, it knows which jobs exist and which crawl came before another, as the jobs
    table tells the real ones; without it every job exists and none came before."""

    def __init__(
        self, jobs: InMemoryJobQueue | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.rows: dict[str, dict[str, FrontierRow]] = {}
        self._jobs = jobs
        self._clock = clock

    def _frontier(self, job_id: str) -> dict[str, FrontierRow]:
        if self._jobs is not None and job_id not in self._jobs.jobs:
            raise NotFoundError(f"there is no job with id {job_id!r}")
        return self.rows.setdefault(job_id, {})

    def _owned(self, job_id: str, url: str, owner: str) -> FrontierRow | None:
        row = self.rows.get(job_id, {}).get(url)
        if row is None or row.state is not FrontierState.LEASED or row.lease_owner != owner:
            return None
        return row

    async def add(self, job_id: str, entries: Sequence[FrontierEntry], max_total: int) -> int:
        frontier = self._frontier(job_id)
        added = 0
        for entry in entries:
            if len(frontier) >= max_total:
                break
            if entry.url not in frontier:
                frontier[entry.url] = FrontierRow(entry.url, entry.depth, _as_utc(entry.lastmod))
                added += 1
        return added

    def _due(self, row: FrontierRow, now: float) -> bool:
        if row.state is FrontierState.PENDING:
            return row.not_before <= now
        return row.state is FrontierState.LEASED and row.lease_expires_at < now

    async def lease(
        self, job_id: str, owner: str, lease_seconds: float, limit: int
    ) -> list[FrontierItem]:
        now = self._clock()
        frontier = self.rows.get(job_id, {})
        # sorted() is stable: equal depths stay in the order they were added
        due = sorted((r for r in frontier.values() if self._due(r, now)), key=lambda r: r.depth)
        leased = due[: max(limit, 0)]
        for row in leased:
            row.state, row.lease_owner = FrontierState.LEASED, owner
            row.lease_expires_at = now + lease_seconds
        return [FrontierItem(r.url, r.depth, r.lastmod, r.attempts) for r in leased]

    async def finish(
        self, job_id: str, url: str, owner: str, state: FrontierState, error: str | None = None
    ) -> None:
        if not state.is_final:
            raise InvalidInputError(f"{state} is not a final state")
        row = self._owned(job_id, url, owner)
        if row is not None:
            row.state, row.lease_owner = state, None
            row.last_error = error if error is not None else row.last_error

    async def retry_later(
        self, job_id: str, url: str, owner: str, delay_seconds: float, error: str
    ) -> None:
        row = self._owned(job_id, url, owner)
        if row is not None:
            row.state, row.lease_owner, row.last_error = FrontierState.PENDING, None, error
            row.attempts += 1
            row.not_before = self._clock() + delay_seconds

    async def release(self, job_id: str, owner: str) -> int:
        return self._hand_back(job_id, lambda holder: holder == owner)

    async def take_over(self, job_id: str, owner: str) -> int:
        return self._hand_back(job_id, lambda holder: holder != owner)

    def _hand_back(self, job_id: str, held_by: Callable[[str | None], bool]) -> int:
        released = 0
        for row in self.rows.get(job_id, {}).values():
            if row.state is FrontierState.LEASED and held_by(row.lease_owner):
                row.state, row.lease_owner, row.not_before = FrontierState.PENDING, None, 0.0
                released += 1
        return released

    async def counts(self, job_id: str) -> dict[FrontierState, int]:
        found: dict[FrontierState, int] = {}
        for row in self.rows.get(job_id, {}).values():
            found[row.state] = found.get(row.state, 0) + 1
        return found

    async def errors(self, job_id: str, limit: int) -> list[JobError]:
        failed = [r for r in self.rows.get(job_id, {}).values() if r.state is FrontierState.FAILED]
        return [JobError(r.url, r.last_error or "") for r in failed[: max(limit, 0)]]

    async def seconds_until_due(self, job_id: str) -> float | None:
        times = [
            r.not_before if r.state is FrontierState.PENDING else r.lease_expires_at
            for r in self.rows.get(job_id, {}).values()
            if not r.state.is_final
        ]
        if not times:
            return None
        return max(0.0, min(times) - self._clock())

    async def seed_from_previous(
        self, job_id: str, collection_id: str, root_url: str, max_total: int
    ) -> int:
        self._frontier(job_id)  # an unknown job is not found
        if self._jobs is None:
            return 0
        # jobs are kept in the order they were enqueued; "previous" means enqueued before
        earlier = list(self._jobs.jobs)[: list(self._jobs.jobs).index(job_id)]
        previous = [
            other
            for other in earlier
            if self._jobs.jobs[other].kind is JobKind.CRAWL
            and self._jobs.jobs[other].collection_id == collection_id
            and self._jobs.jobs[other].url == root_url
        ]
        if not previous:
            return 0
        kept = {FrontierState.INDEXED, FrontierState.UNCHANGED}
        return await self.add(
            job_id,
            [
                FrontierEntry(r.url, r.depth, r.lastmod)
                for r in self.rows.get(previous[-1], {}).values()
                if r.state in kept
            ],
            max_total,
        )
