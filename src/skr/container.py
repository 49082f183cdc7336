"""The one wiring point: builds every adapter and service from the settings."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import anyio

from skr.adapters.httpx_fetcher import HttpxFetcher
from skr.adapters.memory_cache import MemoryCache
from skr.adapters.onnx_embedder import OnnxMiniLMEmbedder
from skr.adapters.openai_generator import OpenAIGenerator
from skr.adapters.sqlite_database import SQLiteDatabase
from skr.adapters.sqlite_job_queue import SQLiteJobQueue
from skr.adapters.sqlite_store import SQLiteStore
from skr.domain.errors import InvalidInputError
from skr.domain.models import DEFAULT_COLLECTION, DEFAULT_TENANT
from skr.observability.metrics import Metrics
from skr.observability.readiness import ReadinessCheck
from skr.ports.cache import Cache
from skr.ports.embedder import Embedder
from skr.ports.fetcher import Fetcher
from skr.ports.generator import Generator
from skr.ports.job_queue import JobQueue
from skr.ports.store import Store
from skr.services.ask import AskService
from skr.services.ingest import IngestService, PageOutcome, PageOutcomeKind
from skr.services.jobs import JobWorker, WorkerOptions
from skr.services.search import SearchService
from skr.settings import Settings

logger = logging.getLogger(__name__)

_INDEX_SAVE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Container:
    settings: Settings
    store: Store
    job_queue: JobQueue
    cache: Cache
    embedder: Embedder
    fetcher: Fetcher
    generator: Generator | None
    metrics: Metrics
    readiness: ReadinessCheck
    ingest: IngestService
    search: SearchService
    ask: AskService
    worker: JobWorker


async def _embedded_store(
    settings: Settings, embedder: Embedder, stack: AsyncExitStack
) -> tuple[SQLiteStore, SQLiteJobQueue]:
    database = SQLiteDatabase(settings.sqlite_path)
    await anyio.to_thread.run_sync(database.open)
    stack.callback(database.close)
    store = SQLiteStore(
        database,
        settings.index_dir,
        model_id=embedder.model_id,
        dimensions=embedder.dimensions,
    )
    await store.load_indexes()
    stack.push_async_callback(store.save_indexes)
    await store.ensure_collection(DEFAULT_COLLECTION, DEFAULT_TENANT)
    queue = SQLiteJobQueue(database, max_attempts=settings.job_max_attempts)
    return store, queue


async def _save_indexes_periodically(store: SQLiteStore) -> None:
    while True:
        await anyio.sleep(_INDEX_SAVE_SECONDS)
        await store.save_indexes()


def _page_counter(metrics: Metrics) -> object:
    def count(outcome: PageOutcome | None) -> None:
        if outcome is None:
            metrics.ingest_pages.labels("failed").inc()
            return
        metrics.ingest_pages.labels(outcome.kind.value).inc()
        if outcome.kind is PageOutcomeKind.INDEXED:
            metrics.ingest_chunks.inc(outcome.chunks)

    return count


@asynccontextmanager
async def build_container(settings: Settings) -> AsyncIterator[Container]:
    """Build everything; on exit, stop background work and close every resource."""
    if settings.database_url is not None:
        raise InvalidInputError(
            "SKR_DATABASE_URL is set, but this build has only the embedded store; "
            "unset it to run embedded"
        )
    async with AsyncExitStack() as stack:
        metrics = Metrics()
        embedder = OnnxMiniLMEmbedder(
            threads=settings.embed_threads,
            batch_size=settings.embed_batch_size,
            max_batch_tokens=settings.embed_max_batch_tokens,
        )
        await anyio.to_thread.run_sync(embedder.load)
        stack.callback(embedder.close)
        store, queue = await _embedded_store(settings, embedder, stack)
        cache = MemoryCache(settings.cache_max_entries)
        fetcher = HttpxFetcher(
            user_agent=settings.user_agent,
            connect_timeout=settings.fetch_connect_timeout_seconds,
            read_timeout=settings.fetch_read_timeout_seconds,
            total_timeout=settings.fetch_total_timeout_seconds,
            max_bytes=settings.fetch_max_bytes,
            max_redirects=settings.fetch_max_redirects,
            allow_private=settings.allow_private_networks,
        )
        await stack.enter_async_context(fetcher)
        generator: Generator | None = None
        if settings.llm_base_url:
            llm = OpenAIGenerator(
                base_url=settings.llm_base_url,
                api_key=settings.llm_api_key.get_secret_value(),
                model=settings.llm_model,
                timeout_seconds=settings.llm_timeout_seconds,
                max_retries=settings.llm_max_retries,
                breaker_failures=settings.llm_breaker_failures,
                breaker_reset_seconds=settings.llm_breaker_reset_seconds,
            )
            stack.push_async_callback(llm.aclose)
            generator = llm
        ingest = IngestService(
            fetcher=fetcher,
            store=store,
            embedder=embedder,
            cache=cache,
            max_tokens=settings.chunk_max_tokens,
        )
        search = SearchService(
            store=store,
            embedder=embedder,
            cache=cache,
            candidates=settings.search_candidates,
            rrf_k=settings.rrf_k,
            cache_ttl_seconds=settings.cache_ttl_seconds,
        )
        ask = AskService(
            search=search,
            generator=generator,
            on_citations_dropped=metrics.citations_dropped.inc,
        )
        worker = JobWorker(
            queue=queue,
            ingest=ingest,
            options=WorkerOptions(
                concurrency=settings.worker_concurrency,
                lease_seconds=settings.job_lease_seconds,
                poll_seconds=settings.job_poll_seconds,
            ),
            on_page=_page_counter(metrics),  # type: ignore[arg-type]
        )
        readiness = ReadinessCheck(store=store, ttl_seconds=settings.readiness_cache_seconds)
        container = Container(
            settings=settings, store=store, job_queue=queue, cache=cache, embedder=embedder,
            fetcher=fetcher, generator=generator, metrics=metrics, readiness=readiness,
            ingest=ingest, search=search, ask=ask, worker=worker,
        )  # fmt: skip
        async with anyio.create_task_group() as group:
            group.start_soon(_save_indexes_periodically, store)
            if settings.run_workers:
                group.start_soon(worker.run)
            try:
                yield container
            finally:
                group.cancel_scope.cancel()
