"""The scale-out way to run: PostgreSQL with pgvector as the system of record and job queue,
Redis (when set) for the cache, progress events and per-host limits shared by every process."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from skr.adapters.memory.cache import MemoryCache
from skr.adapters.memory.host_limiter import InMemoryHostLimiter
from skr.adapters.memory.job_events import MemoryJobEvents
from skr.domain.errors import DependencyError, OverloadedError
from skr.ports.embedder import Embedder
from skr.settings import Settings
from skr.wiring.adapters import Backend

if TYPE_CHECKING:
    from skr.adapters.postgres.database import PostgresDatabase

logger = logging.getLogger(__name__)


async def open_postgres(
    settings: Settings, stack: AsyncExitStack, *, max_size: int, wait_for_server: bool
) -> PostgresDatabase:
    """The pool, once the schema is the one this SKR needs. With ``wait_for_server`` off,
    an unreachable server is not an error: the process starts unready and recovers."""
    from skr.adapters.postgres.database import PostgresDatabase
    from skr.adapters.postgres.migrations import SCHEMA_VERSION, schema_version

    assert settings.database_url is not None
    database = PostgresDatabase(
        settings.database_url,
        min_size=min(settings.db_pool.min_size, max_size),
        max_size=max_size,
        pool_timeout_seconds=settings.db_pool.timeout_seconds,
    )
    await database.open()
    stack.push_async_callback(database.close)
    try:
        async with database.connection() as conn:
            version = await schema_version(conn)
    except (DependencyError, OverloadedError) as exc:
        if wait_for_server:
            raise DependencyError(f"PostgreSQL is unreachable: {exc.detail}") from exc
        logger.warning("PostgreSQL is not reachable yet; serving unready until it is")
        version = SCHEMA_VERSION
    if version != SCHEMA_VERSION:
        raise DependencyError(
            f"the database schema is at version {version}, this SKR needs {SCHEMA_VERSION}: "
            "run `skr migrate`"
        )
    return database


async def scale_out_backend(
    settings: Settings, embedder: Embedder, stack: AsyncExitStack
) -> Backend:
    from skr.adapters.postgres.api_keys import PostgresApiKeyStore
    from skr.adapters.postgres.crawl_frontier import PostgresCrawlFrontier
    from skr.adapters.postgres.job_queue import PostgresJobQueue
    from skr.adapters.postgres.store import PostgresStore

    database = await open_postgres(
        settings, stack, max_size=settings.db_pool.max_size, wait_for_server=False
    )
    store = PostgresStore(database, model_id=embedder.model_id, dimensions=embedder.dimensions)
    backend = Backend(
        store=store,
        job_queue=PostgresJobQueue(database, max_attempts=settings.job.max_attempts),
        cache=MemoryCache(settings.cache.max_entries),
        # Without Redis, events reach only this process's watchers; the API and the
        # workers are separate processes, so watchers fall back to re-reading the job.
        job_events=MemoryJobEvents(),
        frontier=PostgresCrawlFrontier(database),
        api_keys=PostgresApiKeyStore(database),
        # Without Redis, each process keeps its own pace per host.
        host_limiter=InMemoryHostLimiter(),
        pool_stats=database.pool.get_stats,
    )
    if settings.redis_url is not None:
        await _add_redis(settings, backend, stack)
    return backend


async def _add_redis(settings: Settings, backend: Backend, stack: AsyncExitStack) -> None:
    from skr.adapters.redis.cache import RedisCache
    from skr.adapters.redis.client import redis_client
    from skr.adapters.redis.host_limiter import RedisHostLimiter
    from skr.adapters.redis.job_events import RedisJobEvents
    from skr.adapters.redis.resilient_cache import ResilientCache
    from skr.adapters.redis.resilient_host_limiter import ResilientHostLimiter

    assert settings.redis_url is not None
    redis = RedisCache(settings.redis_url)
    await redis.start()
    stack.push_async_callback(redis.aclose)
    cache = ResilientCache(redis)
    backend.cache = cache
    events = RedisJobEvents(settings.redis_url)
    await events.start()
    stack.push_async_callback(events.aclose)
    backend.job_events = events
    # Politeness per host is shared by every worker; without Redis, kept per process.
    # as before the one factory: no health-check ping on the limiter's client
    limiter_client = redis_client(settings.redis_url, health_check_interval_seconds=0)
    stack.push_async_callback(limiter_client.aclose)
    backend.host_limiter = ResilientHostLimiter(
        RedisHostLimiter(limiter_client), backend.host_limiter
    )

    async def redis_state() -> str:
        return "degraded: Redis unreachable, serving without it" if cache.degraded else "ok"

    backend.checks["redis"] = redis_state
