"""The CrawlFrontier port: the URLs of one crawl job, each leased, done or waiting.

A crawl job is run by one worker at a time (it holds the job's lease), but the frontier
is durable and leased URL by URL, so a crawl survives a restart and continues where it
was: URLs a dead worker had leased become available again when their lease expires.
Each URL appears at most once per job, which is what keeps a crawl from fetching a page
twice. Rows stay after the job ends: the next crawl of the same site starts from them.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from skr.domain.models import JobError


class FrontierState(enum.StrEnum):
    PENDING = "pending"  # waiting (maybe not before ``not_before``)
    LEASED = "leased"  # being worked on by a lease owner until the lease expires
    INDEXED = "indexed"  # fetched, and new or changed content stored
    UNCHANGED = "unchanged"  # fetched (or known from sitemap lastmod) and unchanged
    SKIPPED = "skipped"  # not fetched: robots.txt, out of scope, duplicate of a canonical
    FAILED = "failed"  # given up on; ``last_error`` says why
    REMOVED = "removed"  # gone (404/410, or left the site): its document was deleted

    @property
    def is_final(self) -> bool:
        return self not in {FrontierState.PENDING, FrontierState.LEASED}


@dataclass(frozen=True, slots=True)
class FrontierEntry:
    """A URL to add: normalised by the caller; ``lastmod`` from a sitemap, if any."""

    url: str
    depth: int
    lastmod: datetime | None = None


@dataclass(frozen=True, slots=True)
class FrontierItem:
    """A leased URL. ``attempts`` counts earlier tries that ended in ``retry_later``."""

    url: str
    depth: int
    lastmod: datetime | None
    attempts: int


class CrawlFrontier(Protocol):
    async def add(self, job_id: str, entries: Sequence[FrontierEntry], max_total: int) -> int:
        """Add, in order, the entries whose URL this job's frontier does not hold yet, as
        pending, while the frontier holds fewer than ``max_total`` URLs. Returns how many
        were added. A URL already present keeps its state and depth."""
        ...

    async def lease(
        self, job_id: str, owner: str, lease_seconds: float, limit: int
    ) -> list[FrontierItem]:
        """Up to ``limit`` URLs of this job that are pending and due (``not_before``
        passed), or leased with an expired lease; shallowest first, then in the order
        they were added. They become leased by ``owner`` for ``lease_seconds``. Two
        concurrent callers never get the same URL."""
        ...

    async def finish(
        self, job_id: str, url: str, owner: str, state: FrontierState, error: str | None = None
    ) -> None:
        """Give a leased URL its final ``state`` (``error`` kept as its last error).
        A URL no longer leased by ``owner`` is left alone (another worker took it)."""
        ...

    async def retry_later(
        self, job_id: str, url: str, owner: str, delay_seconds: float, error: str
    ) -> None:
        """Put a leased URL back as pending, not due before ``delay_seconds`` pass, with one
        more attempt counted and ``error`` as its last error. Not owned: left alone."""
        ...

    async def release(self, job_id: str, owner: str) -> int:
        """Every URL of this job leased by ``owner`` goes back to pending, due now (a
        paused or cancelled run hands its work back). Returns how many."""
        ...

    async def take_over(self, job_id: str, owner: str) -> int:
        """Every URL of this job leased by an owner other than ``owner`` goes back to
        pending, due now. The caller holds the crawl job's lease, so whoever leased them
        runs this crawl no more: it died (their leases would hold them for their whole
        term), or it lost the job's lease and stops at its next heartbeat. Returns how
        many."""
        ...

    async def counts(self, job_id: str) -> dict[FrontierState, int]:
        """How many URLs of this job are in each state (states with none are left out)."""
        ...

    async def errors(self, job_id: str, limit: int) -> list[JobError]:
        """Failed URLs with their last error, in the order they were added, at most
        ``limit``."""
        ...

    async def seconds_until_due(self, job_id: str) -> float | None:
        """``None`` when no URL of this job is pending or leased; else how long until one
        can be leased: 0 when one is due now, or the earliest ``not_before`` or lease
        expiry from now."""
        ...

    async def seed_from_previous(
        self, job_id: str, collection_id: str, root_url: str, max_total: int
    ) -> int:
        """Add to this job, as pending entries (at most ``max_total`` in all), the URLs
        that the newest other crawl job of the same collection and start URL (the jobs
        table's ``url``) ended as indexed or unchanged, keeping their depth and lastmod.
        Returns how many were added; 0 when there was no earlier crawl."""
        ...
