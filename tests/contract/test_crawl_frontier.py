"""The CrawlFrontier contract: adding, leasing, finishing and seeding behave the same everywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import anyio
import pytest

from skr.domain.errors import InvalidInputError, NotFoundError
from skr.domain.models import JobError, JobKind, JobStatus
from skr.ports.crawl_frontier import CrawlFrontier, FrontierEntry, FrontierItem, FrontierState
from skr.ports.job_queue import JobQueue
from tests.fixtures.kinds import class_id
from tests.fixtures.stores import FRONTIER_KINDS, make_frontier

pytestmark = pytest.mark.anyio

ROOT = "http://site.test/"
SITEMAP_DATE = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=FRONTIER_KINDS, ids=class_id)
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[JobQueue, CrawlFrontier]]:
    async with make_frontier(request.param, tmp_path) as built:
        yield built


@pytest.fixture
def queue(backend: tuple[JobQueue, CrawlFrontier]) -> JobQueue:
    return backend[0]


@pytest.fixture
def frontier(backend: tuple[JobQueue, CrawlFrontier]) -> CrawlFrontier:
    return backend[1]


async def crawl_job(queue: JobQueue, collection_id: str = "c", url: str = ROOT) -> str:
    return (await queue.enqueue(JobKind.CRAWL, collection_id, url, {})).id


def page(name: str, depth: int = 0, lastmod: datetime | None = None) -> FrontierEntry:
    return FrontierEntry(f"{ROOT}{name}", depth, lastmod)


def urls(items: list[FrontierItem]) -> list[str]:
    return [item.url.removeprefix(ROOT) for item in items]


async def settle(
    frontier: CrawlFrontier,
    job_id: str,
    entries: list[FrontierEntry],
    outcomes: Mapping[str, FrontierState],
) -> None:
    """Add ``entries`` and give the named ones their final state; the rest stay pending."""
    assert await frontier.add(job_id, entries, 1000) == len(entries)
    for item in await frontier.lease(job_id, "setup", 30, len(entries)):
        state = outcomes.get(item.url.removeprefix(ROOT))
        if state is not None:
            await frontier.finish(job_id, item.url, "setup", state, "setup error")
    await frontier.release(job_id, "setup")


async def test_add_skips_present_urls_which_keep_their_state_and_depth(
    queue: JobQueue, frontier: CrawlFrontier
) -> None:
    job = await crawl_job(queue)
    assert await frontier.add(job, [page("a"), page("b", 1), page("a", 2)], 100) == 2
    [item] = await frontier.lease(job, "w1", 30, 1)
    assert urls([item]) == ["a"]
    await frontier.finish(job, item.url, "w1", FrontierState.INDEXED)
    assert await frontier.add(job, [page("a"), page("b", 5), page("c", 1)], 100) == 1
    assert await frontier.counts(job) == {FrontierState.INDEXED: 1, FrontierState.PENDING: 2}
    leased = await frontier.lease(job, "w1", 30, 10)
    assert [(i.url.removeprefix(ROOT), i.depth) for i in leased] == [("b", 1), ("c", 1)]
    assert await frontier.add(job, [], 100) == 0


async def test_add_stops_when_the_frontier_holds_max_total_urls(
    queue: JobQueue, frontier: CrawlFrontier
) -> None:
    job = await crawl_job(queue)
    assert await frontier.add(job, [page(n) for n in "abcde"], 3) == 3
    assert await frontier.add(job, [page("f")], 3) == 0
    # a finished URL still counts towards the cap
    [item] = await frontier.lease(job, "w1", 30, 1)
    await frontier.finish(job, item.url, "w1", FrontierState.INDEXED)
    assert await frontier.add(job, [page("a"), page("g"), page("c"), page("h"), page("i")], 5) == 2
    assert await frontier.counts(job) == {FrontierState.INDEXED: 1, FrontierState.PENDING: 4}
    assert urls(await frontier.lease(job, "w1", 30, 10)) == ["b", "c", "g", "h"]


async def test_add_to_an_unknown_job_is_not_found(frontier: CrawlFrontier) -> None:
    with pytest.raises(NotFoundError):
        await frontier.add("missing", [page("a")], 10)


async def test_lease_takes_the_shallowest_first_then_in_order_of_adding(
    queue: JobQueue, frontier: CrawlFrontier
) -> None:
    job = await crawl_job(queue)
    other_zone = datetime(2024, 1, 1, 12, 30, 15, tzinfo=timezone(timedelta(hours=2)))
    entries = [page("c", 2), page("a", 0, SITEMAP_DATE), page("b", 1), page("a2", 0, other_zone)]
    await frontier.add(job, [*entries, page("b2", 1)], 100)
    first = await frontier.lease(job, "w1", 30, 2)
    assert first == [
        FrontierItem(f"{ROOT}a", 0, SITEMAP_DATE, 0),
        FrontierItem(f"{ROOT}a2", 0, other_zone, 0),
    ]
    assert all(item.lastmod is not None and item.lastmod.tzinfo is not None for item in first)
    assert urls(await frontier.lease(job, "w2", 30, 10)) == ["b", "b2", "c"]
    assert await frontier.lease(job, "w3", 30, 10) == []
    assert await frontier.counts(job) == {FrontierState.LEASED: 5}


async def test_lease_only_sees_its_own_job(queue: JobQueue, frontier: CrawlFrontier) -> None:
    job, other = await crawl_job(queue), await crawl_job(queue)
    await frontier.add(job, [page("a")], 10)
    await frontier.add(other, [page("a"), page("b")], 10)
    assert urls(await frontier.lease(job, "w1", 30, 10)) == ["a"]
    assert await frontier.counts(other) == {FrontierState.PENDING: 2}


async def test_concurrent_leasers_never_get_the_same_url(
    queue: JobQueue, frontier: CrawlFrontier
) -> None:
    job = await crawl_job(queue)
    await frontier.add(job, [page(f"p{n}", n % 3) for n in range(20)], 100)
    leased: list[str] = []

    async def lease_some(owner: str) -> None:
        leased.extend(item.url for item in await frontier.lease(job, owner, 30, 3))

    async with anyio.create_task_group() as group:
        for number in range(10):
            group.start_soon(lease_some, f"w{number}")
    assert len(leased) == len(set(leased)) == 20
    assert await frontier.counts(job) == {FrontierState.LEASED: 20}


async def test_an_expired_lease_is_leased_again(queue: JobQueue, frontier: CrawlFrontier) -> None:
    job = await crawl_job(queue)
    await frontier.add(job, [page("a")], 10)
    assert urls(await frontier.lease(job, "dead-worker", 0.2, 10)) == ["a"]
    assert await frontier.lease(job, "w2", 30, 10) == []
    await anyio.sleep(0.3)
    again = await frontier.lease(job, "w2", 30, 10)
    assert again == [FrontierItem(f"{ROOT}a", 0, None, 0)]
    # the dead worker's late answers must not overwrite the new owner's work
    await frontier.finish(job, f"{ROOT}a", "dead-worker", FrontierState.FAILED, "late")
    await frontier.retry_later(job, f"{ROOT}a", "dead-worker", 0, "late")
    assert await frontier.counts(job) == {FrontierState.LEASED: 1}
    await frontier.finish(job, f"{ROOT}a", "w2", FrontierState.INDEXED)
    assert await frontier.counts(job) == {FrontierState.INDEXED: 1}


async def test_finish_and_retry_later_leave_urls_not_leased_by_the_owner_alone(
    queue: JobQueue, frontier: CrawlFrontier
) -> None:
    job = await crawl_job(queue)
    await frontier.add(job, [page("a"), page("b"), page("c")], 10)
    await frontier.lease(job, "w1", 30, 2)
    await frontier.finish(job, f"{ROOT}a", "w2", FrontierState.INDEXED)
    await frontier.retry_later(job, f"{ROOT}b", "w2", 0, "not mine")
    await frontier.finish(job, f"{ROOT}c", "w1", FrontierState.INDEXED)  # pending, not leased
    await frontier.finish(job, f"{ROOT}missing", "w1", FrontierState.INDEXED)
    assert await frontier.counts(job) == {FrontierState.LEASED: 2, FrontierState.PENDING: 1}
    await frontier.finish(job, f"{ROOT}a", "w1", FrontierState.FAILED, "boom")
    await frontier.finish(job, f"{ROOT}a", "w1", FrontierState.INDEXED)  # no longer leased
    await frontier.finish(job, f"{ROOT}b", "w1", FrontierState.SKIPPED)
    assert await frontier.counts(job) == {
        FrontierState.FAILED: 1,
        FrontierState.SKIPPED: 1,
        FrontierState.PENDING: 1,
    }
    assert await frontier.errors(job, 10) == [JobError(f"{ROOT}a", "boom")]
    assert urls(await frontier.lease(job, "w3", 30, 10)) == ["c"]
    with pytest.raises(InvalidInputError):
        await frontier.finish(job, f"{ROOT}c", "w3", FrontierState.PENDING)


async def test_retry_later_waits_and_counts_attempts(
    queue: JobQueue, frontier: CrawlFrontier
) -> None:
    job = await crawl_job(queue)
    await frontier.add(job, [page("a"), page("b", 1)], 10)
    await frontier.lease(job, "w1", 30, 10)
    await frontier.retry_later(job, f"{ROOT}a", "w1", 0.3, "timeout")
    assert await frontier.counts(job) == {FrontierState.PENDING: 1, FrontierState.LEASED: 1}
    assert await frontier.lease(job, "w2", 30, 10) == []  # still waiting
    wait = await frontier.seconds_until_due(job)
    assert wait is not None and 0 < wait <= 0.3
    await anyio.sleep(0.4)
    assert await frontier.lease(job, "w2", 30, 10) == [FrontierItem(f"{ROOT}a", 0, None, 1)]
    await frontier.retry_later(job, f"{ROOT}a", "w2", 0, "timeout again")
    assert await frontier.lease(job, "w3", 30, 10) == [FrontierItem(f"{ROOT}a", 0, None, 2)]
    # no error given when failing: the last one recorded stays
    await frontier.finish(job, f"{ROOT}a", "w3", FrontierState.FAILED)
    assert await frontier.errors(job, 10) == [JobError(f"{ROOT}a", "timeout again")]


async def test_release_hands_an_owners_urls_back(queue: JobQueue, frontier: CrawlFrontier) -> None:
    job = await crawl_job(queue)
    await frontier.add(job, [page("a"), page("b"), page("c"), page("d")], 10)
    await frontier.lease(job, "w1", 30, 2)
    await frontier.lease(job, "w2", 30, 1)
    [done] = await frontier.lease(job, "w1", 30, 1)
    await frontier.finish(job, done.url, "w1", FrontierState.UNCHANGED)
    assert await frontier.release(job, "w1") == 2
    assert await frontier.counts(job) == {
        FrontierState.PENDING: 2,
        FrontierState.LEASED: 1,
        FrontierState.UNCHANGED: 1,
    }
    assert await frontier.seconds_until_due(job) == 0
    assert urls(await frontier.lease(job, "w3", 30, 10)) == ["a", "b"]
    assert await frontier.release(job, "w1") == 0


async def test_counts_leave_out_states_with_none(queue: JobQueue, frontier: CrawlFrontier) -> None:
    job = await crawl_job(queue)
    assert await frontier.counts(job) == {}
    outcomes = {
        "i": FrontierState.INDEXED,
        "u": FrontierState.UNCHANGED,
        "s": FrontierState.SKIPPED,
        "f": FrontierState.FAILED,
        "r": FrontierState.REMOVED,
    }
    await settle(frontier, job, [page(n) for n in ["i", "u", "s", "f", "r", "p", "q"]], outcomes)
    await frontier.lease(job, "w1", 30, 1)
    assert await frontier.counts(job) == {
        FrontierState.INDEXED: 1,
        FrontierState.UNCHANGED: 1,
        FrontierState.SKIPPED: 1,
        FrontierState.FAILED: 1,
        FrontierState.REMOVED: 1,
        FrontierState.LEASED: 1,
        FrontierState.PENDING: 1,
    }


async def test_errors_are_failed_urls_in_order_of_adding(
    queue: JobQueue, frontier: CrawlFrontier
) -> None:
    job = await crawl_job(queue)
    await frontier.add(job, [page(n) for n in "abcde"], 10)
    await frontier.lease(job, "w1", 30, 10)
    await frontier.finish(job, f"{ROOT}d", "w1", FrontierState.FAILED, "d broke")
    await frontier.finish(job, f"{ROOT}b", "w1", FrontierState.FAILED, "b broke")
    await frontier.finish(job, f"{ROOT}a", "w1", FrontierState.INDEXED)
    await frontier.finish(job, f"{ROOT}e", "w1", FrontierState.SKIPPED, "robots.txt")
    await frontier.finish(job, f"{ROOT}c", "w1", FrontierState.FAILED, "c broke")
    assert await frontier.errors(job, 10) == [
        JobError(f"{ROOT}b", "b broke"),
        JobError(f"{ROOT}c", "c broke"),
        JobError(f"{ROOT}d", "d broke"),
    ]
    assert [e.url for e in await frontier.errors(job, 2)] == [f"{ROOT}b", f"{ROOT}c"]
    assert await frontier.errors(await crawl_job(queue), 10) == []


async def test_seconds_until_due(queue: JobQueue, frontier: CrawlFrontier) -> None:
    job = await crawl_job(queue)
    assert await frontier.seconds_until_due(job) is None
    await frontier.add(job, [page("a"), page("b")], 10)
    assert await frontier.seconds_until_due(job) == 0
    await frontier.lease(job, "w1", 30, 1)
    assert await frontier.seconds_until_due(job) == 0  # b is still due
    await frontier.lease(job, "w1", 0.2, 1)
    wait = await frontier.seconds_until_due(job)  # the earliest lease expiry: b's
    assert wait is not None and 0 < wait <= 0.2
    await anyio.sleep(0.3)
    assert await frontier.seconds_until_due(job) == 0  # b's lease expired
    await frontier.lease(job, "w2", 30, 1)
    await frontier.retry_later(job, f"{ROOT}b", "w2", 5, "slow down")
    wait = await frontier.seconds_until_due(job)  # b's not_before, before a's lease ends
    assert wait is not None and 4 < wait <= 5
    await frontier.finish(job, f"{ROOT}a", "w1", FrontierState.INDEXED)
    wait = await frontier.seconds_until_due(job)
    assert wait is not None and 4 < wait <= 5
    await frontier.lease(job, "w3", 30, 1)  # not due: leases nothing
    await frontier.release(job, "w2")  # b is pending, not leased: left alone
    wait = await frontier.seconds_until_due(job)
    assert wait is not None and 4 < wait <= 5


async def test_seconds_until_due_is_none_when_everything_is_final(
    queue: JobQueue, frontier: CrawlFrontier
) -> None:
    job = await crawl_job(queue)
    await settle(
        frontier,
        job,
        [page("a"), page("b")],
        {"a": FrontierState.INDEXED, "b": FrontierState.FAILED},
    )
    assert await frontier.seconds_until_due(job) is None


async def finished_crawl(queue: JobQueue, collection_id: str = "c", url: str = ROOT) -> str:
    """A crawl job run to success; the oldest queued job must be this one."""
    job = await crawl_job(queue, collection_id, url)
    leased = await queue.lease("crawler", 30)
    assert leased is not None and leased.id == job
    await queue.finish(job, "crawler", JobStatus.SUCCEEDED, None)
    return job


async def test_seed_takes_the_indexed_and_unchanged_urls_of_the_newest_earlier_crawl(
    queue: JobQueue, frontier: CrawlFrontier
) -> None:
    oldest = await finished_crawl(queue)
    await settle(frontier, oldest, [page("old")], {"old": FrontierState.INDEXED})
    previous = await finished_crawl(queue)
    outcomes = {
        "z": FrontierState.FAILED,
        "x": FrontierState.INDEXED,
        "s": FrontierState.SKIPPED,
        "r": FrontierState.REMOVED,
        "y": FrontierState.UNCHANGED,
    }
    entries = [page("z"), page("x", 1, SITEMAP_DATE), page("s"), page("r"), page("y", 2)]
    await settle(frontier, previous, [*entries, page("p")], outcomes)
    # neither another collection, another start URL nor another kind of job counts
    for collection_id, url in [("c2", ROOT), ("c", "http://other.test/")]:
        unrelated = await crawl_job(queue, collection_id, url)
        await settle(frontier, unrelated, [page("unrelated")], {"unrelated": FrontierState.INDEXED})
    ingest = (await queue.enqueue(JobKind.INGEST, "c", ROOT, {})).id
    await settle(frontier, ingest, [page("ingested")], {"ingested": FrontierState.INDEXED})
    current = await crawl_job(queue)
    # a crawl queued after this one has not run before it
    later = await crawl_job(queue)
    await settle(frontier, later, [page("later")], {"later": FrontierState.INDEXED})

    assert await frontier.seed_from_previous(current, "c", ROOT, 100) == 2
    assert await frontier.counts(current) == {FrontierState.PENDING: 2}
    assert await frontier.lease(current, "w1", 30, 10) == [
        FrontierItem(f"{ROOT}x", 1, SITEMAP_DATE, 0),
        FrontierItem(f"{ROOT}y", 2, None, 0),
    ]
    assert await frontier.counts(previous) == {
        **dict.fromkeys(outcomes.values(), 1),
        FrontierState.PENDING: 1,
    }


async def test_seed_keeps_present_urls_and_respects_max_total(
    queue: JobQueue, frontier: CrawlFrontier
) -> None:
    previous = await finished_crawl(queue)
    await settle(
        frontier,
        previous,
        [page(n, 1) for n in "abcd"],
        dict.fromkeys("abcd", FrontierState.INDEXED),
    )
    current = await crawl_job(queue)
    await frontier.add(current, [page("b", 3)], 100)
    assert await frontier.seed_from_previous(current, "c", ROOT, 3) == 2
    leased = await frontier.lease(current, "w1", 30, 10)
    assert [(i.url.removeprefix(ROOT), i.depth) for i in leased] == [("a", 1), ("c", 1), ("b", 3)]
    assert await frontier.seed_from_previous(current, "c", ROOT, 3) == 0
    assert await frontier.seed_from_previous(current, "c", ROOT, 10) == 1
    assert await frontier.counts(current) == {FrontierState.LEASED: 3, FrontierState.PENDING: 1}


async def test_seed_without_an_earlier_crawl_adds_nothing(
    queue: JobQueue, frontier: CrawlFrontier
) -> None:
    first = await crawl_job(queue)
    await settle(frontier, first, [page("a")], {"a": FrontierState.INDEXED})
    assert await frontier.seed_from_previous(first, "c", ROOT, 100) == 0
    assert await frontier.counts(first) == {FrontierState.INDEXED: 1}
    elsewhere = await crawl_job(queue, "c", "http://other.test/")
    assert await frontier.seed_from_previous(elsewhere, "c", "http://other.test/", 100) == 0
    assert await frontier.counts(elsewhere) == {}
    # an earlier crawl that indexed nothing leaves nothing to start from
    failed = await crawl_job(queue, "c3")
    await settle(frontier, failed, [page("a")], {"a": FrontierState.FAILED})
    assert await frontier.seed_from_previous(await crawl_job(queue, "c3"), "c3", ROOT, 100) == 0


async def test_take_over_hands_back_the_urls_other_owners_hold(
    queue: JobQueue, frontier: CrawlFrontier
) -> None:
    job, other_job = await crawl_job(queue), await crawl_job(queue)
    await frontier.add(job, [page("a"), page("b"), page("c"), page("d")], 10)
    await frontier.add(other_job, [page("a")], 10)
    await frontier.lease(job, "dead", 300, 2)  # a and b, held for minutes
    await frontier.lease(job, "new", 300, 1)  # c: the caller's own
    await frontier.lease(other_job, "dead", 300, 1)
    assert await frontier.take_over(job, "new") == 2
    assert await frontier.counts(job) == {FrontierState.PENDING: 3, FrontierState.LEASED: 1}
    assert await frontier.seconds_until_due(job) == 0
    assert urls(await frontier.lease(job, "new", 30, 10)) == ["a", "b", "d"]
    assert await frontier.counts(other_job) == {FrontierState.LEASED: 1}  # another job's
    assert await frontier.take_over(job, "new") == 0
