"""A container of fakes, for API tests that need no model, disk or network: in-memory
adapters, and the services built by production's own ``build_services``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from skr.adapters.memory.cache import MemoryCache
from skr.adapters.memory.host_limiter import InMemoryHostLimiter
from skr.adapters.memory.job_events import MemoryJobEvents
from skr.domain.models import DEFAULT_COLLECTION, DEFAULT_TENANT
from skr.observability.metrics import Metrics
from skr.ports.fetcher import Fetcher
from skr.ports.generator import Generator
from skr.settings import Settings
from skr.wiring.adapters import Adapters, Backend
from skr.wiring.container import Container, running_container
from tests.fakes.fake_api_keys import InMemoryApiKeyStore
from tests.fakes.fake_crawl_frontier import InMemoryCrawlFrontier
from tests.fakes.fake_embedder import FakeEmbedder
from tests.fakes.fake_fetcher import DictFetcher
from tests.fakes.fake_job_queue import InMemoryJobQueue
from tests.fakes.fake_store import InMemoryStore

# Settings a test does not set itself: a worker that looks for work this often, so a test
# waits milliseconds, not the production half second, for a job to start; and keys made
# mid-test take effect at once, not after the production five seconds of caching.
QUICK_SETTINGS: dict[str, dict[str, object]] = {
    "job": {"poll_seconds": 0.01},
    "key": {"cache_seconds": 0.0},
}


def fake_adapters(
    pages: dict[str, str],
    generator: Generator | None = None,
    *,
    api_keys: InMemoryApiKeyStore | None = None,
    fetcher: Fetcher | None = None,
) -> Adapters:
    """Every port as its fake (``pages`` are what the fetcher serves, unless ``fetcher``
    is given)."""
    queue = InMemoryJobQueue()
    backend = Backend(
        store=InMemoryStore(),
        job_queue=queue,
        cache=MemoryCache(1000),
        job_events=MemoryJobEvents(),
        frontier=InMemoryCrawlFrontier(queue),
        host_limiter=InMemoryHostLimiter(),
        api_keys=api_keys or InMemoryApiKeyStore(),
    )
    return Adapters(
        backend=backend,
        embedder=FakeEmbedder(),
        fetcher=fetcher or DictFetcher(pages),
        generator=generator,
    )


def quick(settings: Settings, **overrides: object) -> Settings:
    """``settings`` with :data:`QUICK_SETTINGS` where the test left them unset."""
    update: dict[str, object] = {}
    for name, values in QUICK_SETTINGS.items():
        section = getattr(settings, name)
        unset = {k: v for k, v in values.items() if k not in section.model_fields_set}
        update[name] = section.model_copy(update=unset)
    return settings.model_copy(update={**update, **overrides})


def fake_container_factory(
    pages: dict[str, str],
    generator: Generator | None = None,
    *,
    run_worker: bool = True,
    api_keys: InMemoryApiKeyStore | None = None,
    fetcher: Fetcher | None = None,
) -> Callable[[Settings], AbstractAsyncContextManager[Container]]:
    @asynccontextmanager
    async def factory(settings: Settings) -> AsyncIterator[Container]:
        adapters = fake_adapters(pages, generator, api_keys=api_keys, fetcher=fetcher)
        await adapters.backend.store.ensure_collection(DEFAULT_COLLECTION, DEFAULT_TENANT)
        wired = quick(settings, run_workers=run_worker)
        async with running_container(wired, adapters, Metrics()) as container:
            yield container

    return factory
