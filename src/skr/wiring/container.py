"""The one wiring point: ``build_adapters`` (per mode; the only step that does I/O) and
``build_services`` (pure: services from settings and adapters), joined by
``build_container``, the async context manager every entrypoint enters."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import anyio

from skr.adapters.httpx_fetcher import HttpxFetcher
from skr.adapters.onnx_embedder import OnnxMiniLMEmbedder
from skr.adapters.openai_generator import OpenAIGenerator
from skr.adapters.tesseract_image_reader import TesseractImageReader
from skr.domain.models import Answer, Fusion
from skr.observability.gauges import ScrapeGauges
from skr.observability.metered_ports import MeteredCache, TimedEmbedder
from skr.observability.metrics import Metrics
from skr.observability.readiness import ReadinessCheck
from skr.ports.image_reader import ImageReader
from skr.services.access import AccessService, KeyRateLimiter
from skr.services.ask import AskService
from skr.services.collections import CollectionResolver
from skr.services.crawl.polite_fetcher import PoliteFetcher
from skr.services.crawl.service import CrawlService, CrawlSettings
from skr.services.ingest import ImageOptions, IngestService, PageOutcome, PageOutcomeKind
from skr.services.jobs.service import JobLimits, JobService
from skr.services.jobs.worker import JobWorker, WorkerOptions
from skr.services.knowledge import KnowledgeService
from skr.services.library import LibraryService
from skr.services.search import SearchService
from skr.settings import Settings
from skr.wiring.adapters import Adapters, Backend
from skr.wiring.embedded import embedded_backend
from skr.wiring.scale_out import scale_out_backend

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    """What the entrypoints call: every rule lives behind these."""

    ingest: IngestService
    crawl: CrawlService
    collections: CollectionResolver
    search: SearchService
    ask: AskService
    knowledge: KnowledgeService
    jobs: JobService
    library: LibraryService
    worker: JobWorker
    access: AccessService
    key_limiter: KeyRateLimiter
    readiness: ReadinessCheck
    gauges: ScrapeGauges


@dataclass(frozen=True, slots=True)
class Container:
    settings: Settings
    metrics: Metrics
    adapters: Adapters
    services: Services


def _page_counter(metrics: Metrics) -> Callable[[PageOutcome | None], None]:
    def count(outcome: PageOutcome | None) -> None:
        if outcome is None:
            metrics.ingest_pages.labels("failed").inc()
            return
        metrics.ingest_pages.labels(outcome.kind.value).inc()
        if outcome.kind is PageOutcomeKind.INDEXED:
            metrics.ingest_chunks.inc(outcome.chunks)

    return count


def _answer_counter(metrics: Metrics) -> Callable[[Answer], None]:
    def count(answer: Answer) -> None:
        metrics.answers.labels(answer.mode, str(answer.degraded).lower()).inc()

    return count


async def build_adapters(settings: Settings, metrics: Metrics, stack: AsyncExitStack) -> Adapters:
    """Load the model, open the stores of the mode the settings select and the clients;
    each is closed when ``stack`` closes."""
    model = OnnxMiniLMEmbedder(
        threads=settings.embed.threads,
        parallel_batches=settings.embed.parallel_batches,
        batch_size=settings.embed.batch_size,
        max_batch_tokens=settings.embed.max_batch_tokens,
        # only where queries and ingest batches share the model: embedded `skr serve`
        query_session=settings.embed.query_session and settings.run_workers,
        batch_niceness=settings.ingest.niceness,
    )
    await anyio.to_thread.run_sync(model.load)
    stack.callback(model.close)
    embedder = TimedEmbedder(model, metrics.embed_batch_seconds, metrics.embed_texts)
    make_backend = embedded_backend if settings.database_url is None else scale_out_backend
    backend = await make_backend(settings, embedder, stack)
    backend.cache = MeteredCache(backend.cache, metrics.cache_lookups)
    fetcher = HttpxFetcher(
        user_agent=settings.user_agent,
        connect_timeout=settings.fetch.connect_timeout_seconds,
        read_timeout=settings.fetch.read_timeout_seconds,
        total_timeout=settings.fetch.total_timeout_seconds,
        max_bytes=settings.fetch.max_bytes,
        max_redirects=settings.fetch.max_redirects,
        allow_private=settings.allow_private_networks,
    )
    await stack.enter_async_context(fetcher)
    generator = _generator(settings, backend)
    if generator is not None:
        stack.push_async_callback(generator.aclose)
    return Adapters(
        backend=backend,
        embedder=embedder,
        fetcher=fetcher,
        generator=generator,
        image_reader=_image_reader(settings),
    )


def _generator(settings: Settings, backend: Backend) -> OpenAIGenerator | None:
    if not settings.llm.base_url:
        return None
    return OpenAIGenerator(
        base_url=settings.llm.base_url,
        api_key=settings.llm.api_key.get_secret_value(),
        model=settings.llm.model,
        timeout_seconds=settings.llm.timeout_seconds,
        max_retries=settings.llm.max_retries,
        breaker_failures=settings.llm.breaker_failures,
        breaker_reset_seconds=settings.llm.breaker_reset_seconds,
        # the extractive fallback must still fit in the request's own deadline
        deadline_seconds=min(
            settings.llm.timeout_seconds * (settings.llm.max_retries + 1),
            settings.request_timeout_seconds * 0.6,
        ),
        limiter=backend.host_limiter,
        max_concurrency=settings.llm.max_concurrency,
        queue_seconds=settings.llm.queue_seconds,
    )


def _image_reader(settings: Settings) -> ImageReader | None:
    if not settings.ocr.enabled:
        return None
    return TesseractImageReader(
        languages=settings.ocr.languages,
        timeout_seconds=settings.ocr.timeout_seconds,
        niceness=settings.ingest.niceness,
    )


def build_services(settings: Settings, adapters: Adapters, metrics: Metrics) -> Services:
    """Every service, from the settings and the adapters; no I/O."""
    backend = adapters.backend
    polite = PoliteFetcher(
        adapters.fetcher,
        backend.host_limiter,
        interval_seconds=settings.crawl.host_interval_seconds,
        per_host_concurrency=settings.crawl.host_concurrency,
        max_delay_seconds=settings.crawl.max_delay_seconds,
        slot_lease_seconds=settings.fetch.total_timeout_seconds * 2,
    )
    ingest = _ingest_service(settings, adapters, polite)
    crawl = _crawl_service(settings, backend, ingest, polite, metrics)
    search = _search_service(settings, adapters)
    collections = CollectionResolver(backend.store)
    readiness = ReadinessCheck(
        store=backend.store, ttl_seconds=settings.readiness_cache_seconds, extra=backend.checks
    )
    ask = AskService(
        search=search,
        generator=adapters.generator,
        on_citations_dropped=metrics.citations_dropped.inc,
        rewrite_timeout_seconds=settings.llm.rewrite_timeout_seconds,
    )
    return Services(
        ingest=ingest,
        crawl=crawl,
        collections=collections,
        search=search,
        ask=ask,
        knowledge=KnowledgeService(
            search=search,
            ask=ask,
            collections=collections,
            deadline_seconds=settings.request_timeout_seconds,
            on_answer=_answer_counter(metrics),
        ),
        jobs=_job_service(settings, backend, adapters, collections),
        library=LibraryService(store=backend.store, collections=collections, ingest=ingest),
        worker=_worker(settings, backend, ingest, crawl, metrics),
        access=AccessService(backend.api_keys, cache_seconds=settings.key.cache_seconds),
        key_limiter=KeyRateLimiter(
            rate=settings.key.rate_per_second, burst=settings.key.rate_burst
        ),
        readiness=readiness,
        gauges=ScrapeGauges(
            metrics=metrics,
            queue=backend.job_queue,
            readiness=readiness,
            pool_stats=backend.pool_stats,
            generator=adapters.generator,
        ),
    )


def _crawl_service(
    settings: Settings,
    backend: Backend,
    ingest: IngestService,
    polite: PoliteFetcher,
    metrics: Metrics,
) -> CrawlService:
    return CrawlService(
        frontier=backend.frontier,
        ingest=ingest,
        fetcher=polite,
        store=backend.store,
        user_agent=settings.user_agent,
        settings=CrawlSettings(
            concurrency=settings.crawl.concurrency,
            lease_seconds=settings.crawl.url_lease_seconds,
            max_attempts=settings.crawl.url_attempts,
        ),
        on_page=_page_counter(metrics),
    )


def _search_service(settings: Settings, adapters: Adapters) -> SearchService:
    return SearchService(
        store=adapters.backend.store,
        embedder=adapters.embedder,
        cache=adapters.backend.cache,
        candidates=settings.search.candidates,
        rrf_k=settings.search.rrf_k,
        cache_ttl_seconds=settings.cache.ttl_seconds,
        fusion=Fusion(settings.search.fusion),
        keyword_weight=settings.search.keyword_weight,
    )


def _job_service(
    settings: Settings, backend: Backend, adapters: Adapters, collections: CollectionResolver
) -> JobService:
    return JobService(
        queue=backend.job_queue,
        events=backend.job_events,
        fetcher=adapters.fetcher,
        collections=collections,
        limits=JobLimits(
            max_pages=settings.crawl.max_pages_limit,
            key_max_active_jobs=settings.key.max_active_jobs,
        ),
    )


def _worker(
    settings: Settings,
    backend: Backend,
    ingest: IngestService,
    crawl: CrawlService,
    metrics: Metrics,
) -> JobWorker:
    return JobWorker(
        queue=backend.job_queue,
        ingest=ingest,
        options=WorkerOptions(
            concurrency=settings.worker.concurrency,
            lease_seconds=settings.job.lease_seconds,
            poll_seconds=settings.job.poll_seconds,
        ),
        on_page=_page_counter(metrics),
        events=backend.job_events,
        crawl=crawl,
    )


def _ingest_service(settings: Settings, adapters: Adapters, polite: PoliteFetcher) -> IngestService:
    return IngestService(
        fetcher=polite,
        store=adapters.backend.store,
        embedder=adapters.embedder,
        cache=adapters.backend.cache,
        max_tokens=settings.ingest.chunk_max_tokens,
        extraction_processes=settings.ingest.extraction_processes,
        extraction_niceness=settings.ingest.niceness,
        image_reader=adapters.image_reader,
        image_options=ImageOptions(
            max_per_page=settings.image.max_per_page,
            max_bytes=settings.image.max_bytes,
            min_side=settings.image.min_side_pixels,
        ),
    )


@asynccontextmanager
async def running_container(
    settings: Settings, adapters: Adapters, metrics: Metrics
) -> AsyncIterator[Container]:
    """The container over ``adapters``, with the backend's background tasks (and, with
    ``run_workers``, the job worker) running until it is left."""
    services = build_services(settings, adapters, metrics)
    container = Container(settings=settings, metrics=metrics, adapters=adapters, services=services)
    async with anyio.create_task_group() as group:
        for task in adapters.backend.background:
            group.start_soon(task)
        if settings.run_workers:
            group.start_soon(services.worker.run)
        try:
            yield container
        finally:
            group.cancel_scope.cancel()


@asynccontextmanager
async def build_container(settings: Settings) -> AsyncIterator[Container]:
    """Build everything; on exit, stop background work and close every resource."""
    async with AsyncExitStack() as stack:
        metrics = Metrics()
        adapters = await build_adapters(settings, metrics, stack)
        async with running_container(settings, adapters, metrics) as container:
            yield container
