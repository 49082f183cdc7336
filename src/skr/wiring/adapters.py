"""What one way of running is made of: the adapters of the ports the services use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from skr.ports.api_keys import ApiKeyStore
from skr.ports.cache import Cache
from skr.ports.crawl_frontier import CrawlFrontier
from skr.ports.host_limiter import HostLimiter
from skr.ports.job_events import JobEvents
from skr.ports.job_queue import JobQueue
from skr.ports.store import Store


@dataclass(slots=True)
class Backend:
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
