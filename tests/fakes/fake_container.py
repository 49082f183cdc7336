"""A container wired with fakes, for API tests that need no model, disk or network."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio

from skr.adapters.memory.cache import MemoryCache
from skr.adapters.memory.host_limiter import InMemoryHostLimiter
from skr.adapters.memory.job_events import MemoryJobEvents
from skr.domain.models import DEFAULT_COLLECTION, DEFAULT_TENANT
from skr.observability.metrics import Metrics
from skr.observability.readiness import ReadinessCheck
from skr.ports.generator import Generator
from skr.services.access import AccessService, KeyRateLimiter
from skr.services.ask import AskService
from skr.services.collections import CollectionResolver
from skr.services.crawl.polite_fetcher import PoliteFetcher
from skr.services.crawl.service import CrawlService, CrawlSettings
from skr.services.ingest import IngestService
from skr.services.jobs.worker import JobWorker, WorkerOptions
from skr.services.search import SearchService
from skr.settings import Settings
from skr.wiring.container import Container
from tests.fakes.fake_api_keys import InMemoryApiKeyStore
from tests.fakes.fake_crawl_frontier import InMemoryCrawlFrontier
from tests.fakes.fake_embedder import FakeEmbedder
from tests.fakes.fake_fetcher import DictFetcher
from tests.fakes.fake_job_queue import InMemoryJobQueue
from tests.fakes.fake_store import InMemoryStore


def fake_container_factory(
    pages: dict[str, str],
    generator: Generator | None = None,
    *,
    run_worker: bool = True,
    api_keys: InMemoryApiKeyStore | None = None,
) -> Callable[[Settings], AbstractAsyncContextManager[Container]]:
    @asynccontextmanager
    async def factory(settings: Settings) -> AsyncIterator[Container]:
        store, queue, cache = InMemoryStore(), InMemoryJobQueue(), MemoryCache(1000)
        events = MemoryJobEvents()
        embedder, fetcher, metrics = FakeEmbedder(), DictFetcher(pages), Metrics()
        await store.ensure_collection(DEFAULT_COLLECTION, DEFAULT_TENANT)
        ingest = IngestService(
            fetcher=fetcher, store=store, embedder=embedder, cache=cache, max_tokens=128
        )
        search = SearchService(
            store=store, embedder=embedder, cache=cache, candidates=20, rrf_k=60,
            cache_ttl_seconds=60,
        )  # fmt: skip
        polite = PoliteFetcher(
            fetcher, InMemoryHostLimiter(), interval_seconds=0.0, per_host_concurrency=2,
            max_delay_seconds=1.0,
        )  # fmt: skip
        crawl = CrawlService(
            frontier=InMemoryCrawlFrontier(queue), ingest=ingest, fetcher=polite, store=store,
            user_agent=settings.user_agent, settings=CrawlSettings(concurrency=2),
        )  # fmt: skip
        worker = JobWorker(
            queue=queue,
            ingest=ingest,
            options=WorkerOptions(concurrency=1, lease_seconds=5, poll_seconds=0.01),
            events=events,
            crawl=crawl,
        )
        container = Container(
            settings=settings, store=store, job_queue=queue, job_events=events, cache=cache,
            embedder=embedder, fetcher=fetcher, generator=generator, metrics=metrics,
            readiness=ReadinessCheck(store=store, ttl_seconds=1), pool_stats=None, ingest=ingest,
            crawl=crawl, collections=CollectionResolver(store), search=search,
            ask=AskService(search=search, generator=generator),
            worker=worker,
            access=AccessService(api_keys or InMemoryApiKeyStore(), cache_seconds=0),
            key_limiter=KeyRateLimiter(
                rate=settings.key_rate_per_second, burst=settings.key_rate_burst
            ),
        )  # fmt: skip
        async with anyio.create_task_group() as group:
            if run_worker:
                group.start_soon(worker.run)
            yield container
            group.cancel_scope.cancel()

    return factory
