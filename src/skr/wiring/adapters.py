"""The adapters the services are given: those of one way to run (``Backend``: storage and
coordination, embedded or scale-out), and those both ways share (``Adapters``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from skr.ports.api_keys import ApiKeyStore
from skr.ports.cache import Cache
from skr.ports.crawl_frontier import CrawlFrontier
from skr.ports.embedder import Embedder
from skr.ports.fetcher import Fetcher
from skr.ports.generator import Generator
from skr.ports.host_limiter import HostLimiter
from skr.ports.image_reader import ImageReader
from skr.ports.job_events import JobEvents
from skr.ports.job_queue import JobQueue
from skr.ports.store import Store


@dataclass(slots=True)
class Backend:
    """What one way to run is made of; ``checks`` feed readiness, ``background`` tasks run
    as long as the container does."""

    store: Store
    job_queue: JobQueue
    cache: Cache
    job_events: JobEvents
    frontier: CrawlFrontier
    host_limiter: HostLimiter
    api_keys: ApiKeyStore
    checks: dict[str, Callable[[], Awaitable[str]]] = field(default_factory=dict)
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    pool_stats: Callable[[], Mapping[str, int]] | None = None


@dataclass(frozen=True, slots=True)
class Adapters:
    backend: Backend
    embedder: Embedder
    fetcher: Fetcher
    generator: Generator | None = None
    image_reader: ImageReader | None = None
