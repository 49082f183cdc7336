"""The one wiring point: builds every adapter and service from the settings."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import anyio

from skr.adapters.httpx_fetcher import HttpxFetcher
from skr.adapters.onnx_embedder import OnnxMiniLMEmbedder
from skr.adapters.openai_generator import OpenAIGenerator
from skr.adapters.tesseract_image_reader import TesseractImageReader
from skr.domain.models import Fusion
from skr.observability.metered_ports import MeteredCache, TimedEmbedder
from skr.observability.metrics import Metrics
from skr.observability.readiness import ReadinessCheck
from skr.ports.cache import Cache
from skr.ports.embedder import Embedder
from skr.ports.fetcher import Fetcher
from skr.ports.generator import Generator
from skr.ports.job_events import JobEvents
from skr.ports.job_queue import JobQueue
from skr.ports.store import Store
from skr.services.access import AccessService, KeyRateLimiter
from skr.services.ask import AskService
from skr.services.collections import CollectionResolver
from skr.services.crawl.polite_fetcher import PoliteFetcher
from skr.services.crawl.service import CrawlService, CrawlSettings
from skr.services.ingest import ImageOptions, IngestService, PageOutcome, PageOutcomeKind
from skr.services.jobs.worker import JobWorker, WorkerOptions
from skr.services.search import SearchService
from skr.settings import Settings
from skr.wiring.embedded import embedded_backend
from skr.wiring.scale_out import scale_out_backend

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Container:
    settings: Settings
    store: Store
    job_queue: JobQueue
    job_events: JobEvents
    cache: Cache
    embedder: Embedder
    fetcher: Fetcher
    generator: Generator | None
    metrics: Metrics
    readiness: ReadinessCheck
    pool_stats: Callable[[], Mapping[str, int]] | None
    ingest: IngestService
    crawl: CrawlService
    collections: CollectionResolver
    search: SearchService
    ask: AskService
    worker: JobWorker
    access: AccessService
    key_limiter: KeyRateLimiter


def _page_counter(metrics: Metrics) -> Callable[[PageOutcome | None], None]:
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
    async with AsyncExitStack() as stack:
        metrics = Metrics()
        model = OnnxMiniLMEmbedder(
            threads=settings.embed_threads,
            parallel_batches=settings.embed_parallel_batches,
            batch_size=settings.embed_batch_size,
            max_batch_tokens=settings.embed_max_batch_tokens,
            # only where queries and ingest batches share the model: embedded `skr serve`
            query_session=settings.embed_query_session and settings.run_workers,
            batch_niceness=settings.ingest_niceness,
        )
        await anyio.to_thread.run_sync(model.load)
        stack.callback(model.close)
        embedder = TimedEmbedder(model, metrics.embed_batch_seconds, metrics.embed_texts)
        make_backend = embedded_backend if settings.database_url is None else scale_out_backend
        backend = await make_backend(settings, embedder, stack)
        store, queue = backend.store, backend.job_queue
        cache = MeteredCache(backend.cache, metrics.cache_lookups)
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
        polite = PoliteFetcher(
            fetcher,
            backend.host_limiter,
            interval_seconds=settings.crawl_host_interval_seconds,
            per_host_concurrency=settings.crawl_host_concurrency,
            max_delay_seconds=settings.crawl_max_delay_seconds,
            slot_lease_seconds=settings.fetch_total_timeout_seconds * 2,
        )
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
                # the extractive fallback must still fit in the request's own deadline
                deadline_seconds=min(
                    settings.llm_timeout_seconds * (settings.llm_max_retries + 1),
                    settings.request_timeout_seconds * 0.6,
                ),
                limiter=backend.host_limiter,
                max_concurrency=settings.llm_max_concurrency,
                queue_seconds=settings.llm_queue_seconds,
            )
            stack.push_async_callback(llm.aclose)
            generator = llm
        ingest = IngestService(
            fetcher=polite,
            store=store,
            embedder=embedder,
            cache=cache,
            max_tokens=settings.chunk_max_tokens,
            extraction_processes=settings.extraction_processes,
            extraction_niceness=settings.ingest_niceness,
            image_reader=(
                TesseractImageReader(
                    languages=settings.ocr_languages,
                    timeout_seconds=settings.ocr_timeout_seconds,
                    niceness=settings.ingest_niceness,
                )
                if settings.ocr_enabled
                else None
            ),
            image_options=ImageOptions(
                max_per_page=settings.image_max_per_page,
                max_bytes=settings.image_max_bytes,
                min_side=settings.image_min_side_pixels,
            ),
        )
        crawl = CrawlService(
            frontier=backend.frontier,
            ingest=ingest,
            fetcher=polite,
            store=store,
            user_agent=settings.user_agent,
            settings=CrawlSettings(
                concurrency=settings.crawl_concurrency,
                lease_seconds=settings.crawl_url_lease_seconds,
                max_attempts=settings.crawl_url_attempts,
            ),
            on_page=_page_counter(metrics),
        )
        search = SearchService(
            store=store,
            embedder=embedder,
            cache=cache,
            candidates=settings.search_candidates,
            rrf_k=settings.rrf_k,
            cache_ttl_seconds=settings.cache_ttl_seconds,
            fusion=Fusion(settings.search_fusion),
            keyword_weight=settings.search_keyword_weight,
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
            on_page=_page_counter(metrics),
            events=backend.job_events,
            crawl=crawl,
        )
        readiness = ReadinessCheck(
            store=store, ttl_seconds=settings.readiness_cache_seconds, extra=backend.checks
        )
        container = Container(
            settings=settings, store=store, job_queue=queue, job_events=backend.job_events,
            cache=cache, embedder=embedder, fetcher=fetcher, generator=generator, metrics=metrics,
            readiness=readiness, pool_stats=backend.pool_stats, ingest=ingest, crawl=crawl,
            collections=CollectionResolver(store), search=search, ask=ask, worker=worker,
            access=AccessService(backend.api_keys, cache_seconds=settings.key_cache_seconds),
            key_limiter=KeyRateLimiter(
                rate=settings.key_rate_per_second, burst=settings.key_rate_burst
            ),
        )  # fmt: skip
        async with anyio.create_task_group() as group:
            for task in backend.background:
                group.start_soon(task)
            if settings.run_workers:
                group.start_soon(worker.run)
            try:
                yield container
            finally:
                group.cancel_scope.cancel()
