"""JobService and LibraryService on fakes: the rules every entrypoint goes through."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

from skr.adapters.memory.job_events import MemoryJobEvents
from skr.domain.access import ApiKey, Caller, Scope
from skr.domain.errors import InvalidInputError, NotFoundError, RateLimitedError
from skr.domain.models import DEFAULT_COLLECTION, JobKind, JobStatus
from skr.observability.metrics import Metrics
from skr.ports.job_events import QUEUE_SIGNAL
from skr.services.collections import CollectionResolver
from skr.services.jobs.service import CrawlRequest, JobLimits, JobService
from skr.settings import Settings
from skr.wiring.container import build_services
from tests.fakes.fake_container import fake_adapters, quick
from tests.fakes.fake_fetcher import DictFetcher
from tests.fakes.fake_job_queue import InMemoryJobQueue
from tests.fakes.fake_store import InMemoryStore
from tests.unit.test_ingest_and_worker import PAGE, URL

pytestmark = pytest.mark.anyio

ACME = Caller("acme", None)
GLOBEX = Caller("globex", None)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def job_service(
    queue: InMemoryJobQueue, events: MemoryJobEvents | None = None, *, active: int = 5
) -> JobService:
    return JobService(
        queue=queue,
        events=events or MemoryJobEvents(),
        fetcher=DictFetcher({URL: PAGE}),
        collections=CollectionResolver(InMemoryStore()),
        limits=JobLimits(max_pages=50, key_max_active_jobs=active),
    )


async def test_a_submitted_page_is_queued_for_the_callers_collection_and_wakes_a_worker() -> None:
    queue, events = InMemoryJobQueue(), MemoryJobEvents()
    service = job_service(queue, events)
    async with events.listen(QUEUE_SIGNAL) as listener:
        job = await service.submit(f" {URL}#part ", ACME, collection=DEFAULT_COLLECTION)
        assert await listener.wait(1.0), "no worker was woken"
    assert (job.kind, job.url, job.tenant) == (JobKind.INGEST, URL, "acme")
    assert [j.id for j in await service.list_recent("acme", 10)] == [job.id]
    assert await service.list_recent("globex", 10) == []


async def test_a_crawl_is_held_to_the_page_limit_and_its_prefix() -> None:
    service = job_service(InMemoryJobQueue())
    with pytest.raises(InvalidInputError, match="at most 50"):
        await service.submit(URL, ACME, collection="default", crawl=CrawlRequest(max_pages=51))
    with pytest.raises(InvalidInputError, match="prefix"):
        await service.submit(
            URL,
            ACME,
            collection="default",
            crawl=CrawlRequest(max_pages=10, prefix="http://docs.test/api/"),
        )
    job = await service.submit(URL, ACME, collection="default", crawl=CrawlRequest(max_pages=50))
    assert job.kind is JobKind.CRAWL


async def test_a_url_the_guard_refuses_is_never_queued() -> None:
    queue = InMemoryJobQueue()
    with pytest.raises(InvalidInputError):
        await job_service(queue).submit("http://127.0.0.1/", ACME, collection="default")
    assert await queue.list_recent(10) == []


async def test_a_key_over_its_active_jobs_is_told_to_wait() -> None:
    key = ApiKey("k1", "acme", "test", frozenset({Scope.INGEST}), datetime.now(UTC))
    service = job_service(InMemoryJobQueue(), active=1)
    await service.submit(URL, Caller("acme", key), collection="default")
    with pytest.raises(RateLimitedError):
        await service.submit(URL, Caller("acme", key), collection="default")


async def test_another_tenants_job_is_unknown_to_read_watch_and_control() -> None:
    queue, events = InMemoryJobQueue(), MemoryJobEvents()
    service = job_service(queue, events)
    job = await service.submit(URL, ACME, collection="default")
    for attempt in (
        service.get(job.id, "globex"),
        service.control(job.id, "cancel", "globex"),
        service.watch(job.id, "globex", poll_seconds=0.1, max_seconds=1),
    ):
        with pytest.raises(NotFoundError):
            await attempt
    assert (await service.get(job.id, "acme")).status is JobStatus.QUEUED
    with pytest.raises(InvalidInputError):
        await service.control(job.id, "explode", "acme")
    async with events.listen(job.id) as listener:
        cancelled = await service.control(job.id, "cancel", "acme")
        assert await listener.wait(1.0), "the job's worker was not told"
    assert cancelled.status is JobStatus.CANCELLED


async def test_the_library_keeps_each_tenant_to_its_own_documents() -> None:
    adapters = fake_adapters({URL: PAGE})
    services = build_services(quick(Settings()), adapters, Metrics())
    collection = await services.library.collection(DEFAULT_COLLECTION, "acme")
    await services.ingest.ingest_page(URL, collection.id)
    [document], _ = await services.library.list_documents(
        DEFAULT_COLLECTION, "acme", limit=10, cursor=None
    )
    [hit] = await services.search.search(collection, "blueprint", 1, None)
    chunk_id = hit.id
    assert (await services.library.get_chunk(chunk_id, "acme")).document_id == document.id
    for attempt in (
        services.library.get_document(document.id, "globex"),
        services.library.get_chunk(chunk_id, "globex"),
        services.library.delete_document(document.id, "globex"),
    ):
        with pytest.raises(NotFoundError):
            await attempt
    await services.library.delete_document(document.id, "acme")
    with pytest.raises(NotFoundError):
        await services.library.get_document(document.id, "acme")
    with anyio.fail_after(1):
        assert await services.library.list_documents(
            DEFAULT_COLLECTION, "acme", limit=10, cursor=None
        ) == ([], None)
