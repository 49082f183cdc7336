"""Ingest and the job worker on fakes: pages and texts, unchanged, replaced, failures, leases."""

from __future__ import annotations

import time
from typing import Any

import anyio
import numpy as np
import pytest

from skr.adapters.memory.cache import MemoryCache
from skr.adapters.memory.job_events import MemoryJobEvents
from skr.domain.errors import DependencyError, FetchError, InvalidInputError
from skr.domain.models import FetchedPage, JobKind, JobStatus
from skr.ports.job_events import QUEUE_SIGNAL
from skr.services.ingest import IngestService, PageOutcomeKind, TextDocument
from skr.services.jobs.worker import JobWorker, WorkerOptions
from tests.fakes.fake_embedder import FakeEmbedder
from tests.fakes.fake_fetcher import DictFetcher
from tests.fakes.fake_job_queue import InMemoryJobQueue
from tests.fakes.fake_store import InMemoryStore

pytestmark = pytest.mark.anyio

URL = "http://docs.test/blueprints"
PAGE = """<html><head><title>Blueprints</title></head><body><main>
<h1>Modular Applications with Blueprints</h1>
<p>A blueprint is a way to organise a group of related views and other code.
Rather than registering views directly with an application, they are registered with a
blueprint.</p>
<h2>Registering Blueprints</h2>
<p>Then the blueprint is registered with the application when it is available, using the
register_blueprint method of the Flask application object.</p>
<figure><img src="/static/diagram.png" alt="blueprint diagram" width="400" height="300">
<figcaption>How blueprints fit into an application</figcaption></figure>
</main></body></html>"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class SlowFetcher(DictFetcher):
    """Takes ``seconds`` to answer, so that a job outlives a few heartbeats."""

    def __init__(self, pages: dict[str, str], seconds: float) -> None:
        super().__init__(pages)
        self.seconds = seconds

    async def fetch(self, url: str, **kwargs: Any) -> FetchedPage:
        await anyio.sleep(self.seconds)
        return await super().fetch(url, **kwargs)


def build(
    pages: dict[str, str], fetch_seconds: float = 0.0
) -> tuple[IngestService, InMemoryStore, DictFetcher, MemoryCache]:
    """An IngestService on fakes; each fetch takes ``fetch_seconds``."""
    fetcher = SlowFetcher(pages, fetch_seconds) if fetch_seconds else DictFetcher(pages)
    store, cache = InMemoryStore(), MemoryCache(100)
    service = IngestService(
        fetcher=fetcher, store=store, embedder=FakeEmbedder(), cache=cache, max_tokens=64
    )
    return service, store, fetcher, cache


async def test_page_is_split_embedded_and_stored() -> None:
    service, store, _, cache = build({URL: PAGE})
    collection = await store.ensure_collection("default", "t")
    outcome = await service.ingest_page(URL, collection.id)
    assert outcome.kind is PageOutcomeKind.INDEXED
    assert outcome.document is not None and outcome.document.title == "Blueprints"
    texts = [c.text for c, _ in store.chunks.values()]
    assert any("register_blueprint" in t for t in texts)
    assert outcome.document.image_count == 1
    [image] = [c for c, _ in store.chunks.values() if c.image is not None]
    assert image.image is not None and image.image.src == "http://docs.test/static/diagram.png"
    assert await cache.generation(collection.id) == 1


async def test_unchanged_page_stores_nothing_new() -> None:
    service, store, fetcher, cache = build({URL: PAGE})
    collection = await store.ensure_collection("default", "t")
    await service.ingest_page(URL, collection.id)
    before = set(store.chunks)
    again = await service.ingest_page(URL, collection.id)
    assert again.kind is PageOutcomeKind.UNCHANGED
    assert set(store.chunks) == before
    assert await cache.generation(collection.id) == 1
    # same content with different markup is unchanged too (hash of what is kept)
    fetcher.pages[URL] = PAGE.replace("<main>", "<main class='x'>")
    assert (await service.ingest_page(URL, collection.id)).kind is PageOutcomeKind.UNCHANGED


async def test_changed_page_replaces_its_chunks() -> None:
    service, store, fetcher, _ = build({URL: PAGE})
    collection = await store.ensure_collection("default", "t")
    first = await service.ingest_page(URL, collection.id)
    fetcher.pages[URL] = PAGE.replace("register_blueprint", "attach_blueprint")
    second = await service.ingest_page(URL, collection.id)
    assert second.kind is PageOutcomeKind.INDEXED
    assert second.document is not None and first.document is not None
    assert second.document.id == first.document.id
    texts = " ".join(c.text for c, _ in store.chunks.values())
    assert "attach_blueprint" in texts and "register_blueprint" not in texts
    assert len(store.documents) == 1


async def test_page_without_text_is_an_error() -> None:
    service, store, _, _ = build({URL: "<html><body><script>x()</script></body></html>"})
    collection = await store.ensure_collection("default", "t")
    with pytest.raises(FetchError, match="no text"):
        await service.ingest_page(URL, collection.id)


def worker(
    service: IngestService,
    queue: InMemoryJobQueue,
    *,
    events: MemoryJobEvents | None = None,
    concurrency: int = 1,
    lease_seconds: float = 5,
    poll_seconds: float = 0.01,
) -> JobWorker:
    options = WorkerOptions(
        concurrency=concurrency, lease_seconds=lease_seconds, poll_seconds=poll_seconds
    )
    return JobWorker(queue=queue, ingest=service, options=options, events=events)


async def test_worker_runs_a_job_to_success_and_counts() -> None:
    service, store, _, _ = build({URL: PAGE})
    collection = await store.ensure_collection("default", "t")
    queue = InMemoryJobQueue()
    job = await queue.enqueue(JobKind.INGEST, collection.id, URL, {})
    w = worker(service, queue)
    leased = await queue.lease(w.owner, 5)
    assert leased is not None
    await w.run_job(leased)
    done = await queue.get(job.id)
    assert done.status is JobStatus.SUCCEEDED
    chunks = len(store.chunks)
    assert chunks > 0
    assert done.counters.as_dict() == {
        "discovered": 1, "fetched": 1, "indexed": 1, "unchanged": 0, "skipped": 0, "failed": 0,
        "removed": 0, "chunks_embedded": chunks,
    }  # fmt: skip


async def test_worker_records_the_failure_reason() -> None:
    service, store, _, _ = build({})
    collection = await store.ensure_collection("default", "t")
    queue = InMemoryJobQueue()
    job = await queue.enqueue(JobKind.INGEST, collection.id, URL, {})
    w = worker(service, queue)
    with anyio.move_on_after(2):
        async with anyio.create_task_group() as group:
            group.start_soon(w.run)
            while (await queue.get(job.id)).status is not JobStatus.FAILED:
                await anyio.sleep(0.01)
            group.cancel_scope.cancel()
    failed = await queue.get(job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.reason == "the server answered 404 Not Found"
    assert failed.errors[0].url == URL and failed.counters.failed == 1


class BrokenStore(InMemoryStore):
    async def write_page(self, page: object) -> object:  # type: ignore[override]
        raise DependencyError("the SQLite store failed: disk I/O error")


async def test_transient_failure_is_retried_with_backoff_not_failed() -> None:
    store, fetcher, cache = BrokenStore(), DictFetcher({URL: PAGE}), MemoryCache(10)
    service = IngestService(
        fetcher=fetcher, store=store, embedder=FakeEmbedder(), cache=cache, max_tokens=64
    )
    collection = await store.ensure_collection("default", "t")
    queue = InMemoryJobQueue(max_attempts=3)
    job = await queue.enqueue(JobKind.INGEST, collection.id, URL, {})
    w = worker(service, queue)
    leased = await queue.lease(w.owner, 5)
    assert leased is not None
    await w.run_job(leased)
    waiting = await queue.get(job.id)
    assert waiting.status is JobStatus.QUEUED
    assert waiting.reason == "the SQLite store failed: disk I/O error"
    assert queue.not_before[job.id] > time.time()  # backing off, not hammering


def text_service(max_tokens: int = 64) -> tuple[IngestService, InMemoryStore, FakeEmbedder]:
    store, embedder = InMemoryStore(), FakeEmbedder()
    service = IngestService(
        fetcher=DictFetcher({}), store=store, embedder=embedder, cache=MemoryCache(10),
        max_tokens=max_tokens,
    )  # fmt: skip
    return service, store, embedder


ABSTRACT = (
    "Blueprints organise related views.\n\nThey are registered with the application "
    "using register_blueprint.\n   \nEach blueprint can carry its own templates."
)


async def test_text_goes_through_the_page_path_under_its_source_id() -> None:
    service, store, embedder = text_service(max_tokens=12)
    collection = await store.ensure_collection("default", "t")
    outcome = await service.ingest_text(
        source_id="beir://docs/7", title="Blueprints  guide", text=ABSTRACT,
        collection_id=collection.id,
    )  # fmt: skip
    assert outcome.kind is PageOutcomeKind.INDEXED and outcome.document is not None
    assert outcome.document.url == outcome.document.final_url == "beir://docs/7"
    assert outcome.document.title == "Blueprints guide"
    chunks = sorted((c for c, _ in store.chunks.values()), key=lambda c: c.ordinal)
    assert outcome.chunks == len(chunks) == 3  # one paragraph each at this budget
    assert chunks[1].text == "They are registered with the application using register_blueprint."
    # embedded exactly as a page's chunk: title, then the text
    _, vector = store.chunks[chunks[0].id]
    assert np.allclose(vector, embedder.vector(f"Blueprints guide\n{chunks[0].text}"))
    assert len(embedder.batches) == 1


async def test_unchanged_text_stores_nothing_new_and_changed_text_replaces() -> None:
    service, store, embedder = text_service()
    collection = await store.ensure_collection("default", "t")
    first = await service.ingest_text(
        source_id="beir://docs/1", title="T", text=ABSTRACT, collection_id=collection.id
    )
    chunk_ids = set(store.chunks)
    again = await service.ingest_text(
        source_id="beir://docs/1", title="T", text=ABSTRACT, collection_id=collection.id
    )
    assert again.kind is PageOutcomeKind.UNCHANGED and set(store.chunks) == chunk_ids
    assert len(embedder.batches) == 1
    changed = await service.ingest_text(
        source_id="beir://docs/1", title="T", text="Something else.", collection_id=collection.id
    )
    assert changed.kind is PageOutcomeKind.INDEXED
    assert changed.document is not None and first.document is not None
    assert changed.document.id == first.document.id
    assert [c.text for c, _ in store.chunks.values()] == ["Something else."]


async def test_many_texts_are_embedded_in_batches_across_documents() -> None:
    service, store, embedder = text_service()
    collection = await store.ensure_collection("default", "t")
    documents = [
        TextDocument(f"beir://docs/{i}", f"Doc {i}", f"Text number {i}.") for i in range(10)
    ]
    progress: list[int] = []
    outcomes = await service.ingest_texts(
        documents, collection_id=collection.id, batch_chunks=4, on_progress=progress.append
    )
    assert [len(batch) for batch in embedder.batches] == [4, 4, 2]
    assert [o.document.url for o in outcomes if o.document] == [d.source_id for d in documents]
    assert all(o.kind is PageOutcomeKind.INDEXED and o.chunks == 1 for o in outcomes)
    assert len(store.documents) == 10 and progress[-1] == 10 and progress == sorted(progress)
    by_url = {c.url: (c, v) for c, v in store.chunks.values()}
    chunk, vector = by_url["beir://docs/5"]
    assert chunk.text == "Text number 5." and np.allclose(
        vector, embedder.vector("Doc 5\nText number 5.")
    )

    # one call for everything with the default batch, and nothing again when unchanged
    embedder.batches.clear()
    documents[3] = TextDocument("beir://docs/3", "Doc 3", "A new text.")
    again = await service.ingest_texts(documents, collection_id=collection.id)
    assert [o.kind for o in again].count(PageOutcomeKind.UNCHANGED) == 9
    assert again[3].kind is PageOutcomeKind.INDEXED
    assert embedder.batches == [["Doc 3\nA new text."]]


async def test_a_text_without_words_stores_nothing() -> None:
    service, store, embedder = text_service()
    collection = await store.ensure_collection("default", "t")
    documents = [
        TextDocument("beir://docs/1", "T", "Fine."),
        TextDocument("beir://docs/2", "T", " \n\n "),
    ]
    with pytest.raises(InvalidInputError, match="no text"):
        await service.ingest_texts(documents, collection_id=collection.id)
    assert store.documents == {} and embedder.batches == []


async def test_an_idle_worker_takes_a_job_when_told_one_was_queued_not_at_its_next_poll() -> None:
    service, store, _, _ = build({URL: PAGE})
    collection = await store.ensure_collection("default", "t")
    queue, events = InMemoryJobQueue(), MemoryJobEvents()
    idle = worker(service, queue, events=events, concurrency=2, poll_seconds=60)
    async with anyio.create_task_group() as group:
        group.start_soon(idle.run)
        await anyio.sleep(0.1)  # both loops have looked, found nothing, and wait
        quiet = await queue.enqueue(JobKind.INGEST, collection.id, URL, {})
        await anyio.sleep(0.3)
        assert (await queue.get(quiet.id)).status is JobStatus.QUEUED  # no signal: it waits
        await events.publish(QUEUE_SIGNAL)
        with anyio.fail_after(5):  # not the 60 s poll
            while (await queue.get(quiet.id)).status is not JobStatus.SUCCEEDED:
                await anyio.sleep(0.02)
        group.cancel_scope.cancel()


class UnreachableHeartbeats(InMemoryJobQueue):
    """A queue whose store cannot be reached for the first ``failures`` heartbeats."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.heartbeats = 0

    async def heartbeat(self, job_id: str, owner: str, lease_seconds: float) -> JobStatus:
        self.heartbeats += 1
        if self.heartbeats <= self.failures:
            raise DependencyError("the job store could not be reached")
        return await super().heartbeat(job_id, owner, lease_seconds)


async def test_a_heartbeat_that_cannot_reach_the_queue_neither_stops_the_job_nor_the_worker() -> (
    None
):
    service, store, _, _ = build({URL: PAGE, URL + "/2": PAGE}, fetch_seconds=0.35)
    collection = await store.ensure_collection("default", "t")
    queue = UnreachableHeartbeats(failures=2)
    first = await queue.enqueue(JobKind.INGEST, collection.id, URL, {})
    second = await queue.enqueue(JobKind.INGEST, collection.id, URL + "/2", {})
    # a heartbeat every 0.1 s: the first job meets the two that fail
    w = worker(service, queue, lease_seconds=0.3)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(w.run)
            while (await queue.get(second.id)).status is not JobStatus.SUCCEEDED:
                await anyio.sleep(0.02)
            group.cancel_scope.cancel()
    assert queue.heartbeats > 2  # the failing ones, then ones that reached the queue
    done = await queue.get(first.id)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 1


async def test_a_pause_stops_a_running_job_at_once_not_at_its_next_heartbeat() -> None:
    service, store, _, _ = build({URL: PAGE}, fetch_seconds=3.0)
    collection = await store.ensure_collection("default", "t")
    queue, events = InMemoryJobQueue(), MemoryJobEvents()
    w = worker(service, queue, events=events, lease_seconds=60)  # next heartbeat: 20 s away
    job = await queue.enqueue(JobKind.INGEST, collection.id, URL, {})
    leased = await queue.lease(w.owner, 60)
    assert leased is not None
    stopped = anyio.Event()

    async def run() -> None:
        await w.run_job(leased)
        stopped.set()

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await anyio.sleep(0.2)  # fetching
        await queue.control(job.id, "pause")  # as the API does: the change, then its event
        await events.publish(job.id)
        with anyio.fail_after(2):  # before the 3 s fetch ends, let alone a heartbeat
            await stopped.wait()
    assert (await queue.get(job.id)).status is JobStatus.PAUSED
    assert store.documents == {}
