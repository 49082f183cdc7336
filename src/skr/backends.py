"""The two ways to run, as factories the container picks from the settings: embedded
(SQLite + local HNSW + in-memory cache and job events) and scale-out (PostgreSQL + Redis)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from skr.adapters.memory_cache import MemoryCache
from skr.adapters.memory_host_limiter import InMemoryHostLimiter
from skr.adapters.memory_job_events import MemoryJobEvents
from skr.adapters.sqlite_api_keys import SQLiteApiKeyStore
from skr.adapters.sqlite_crawl_frontier import SQLiteCrawlFrontier
from skr.adapters.sqlite_database import SQLiteDatabase
from skr.adapters.sqlite_job_queue import SQLiteJobQueue
from skr.adapters.sqlite_store import SQLiteStore
from skr.domain.errors import DependencyError, OverloadedError
from skr.domain.models import DEFAULT_COLLECTION, DEFAULT_TENANT
from skr.ports.api_keys import ApiKeyStore
from skr.ports.cache import Cache
from skr.ports.crawl_frontier import CrawlFrontier
from skr.ports.embedder import Embedder
from skr.ports.host_limiter import HostLimiter
from skr.ports.job_events import JobEvents
from skr.ports.job_queue import JobQueue
from skr.ports.store import Store
from skr.settings import Settings

if TYPE_CHECKING:
    from skr.adapters.postgres_database import PostgresDatabase

logger = logging.getLogger(__name__)

_INDEX_SAVE_SECONDS = 30.0


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


async def _open_sqlite(
    settings: Settings, stack: AsyncExitStack, *, model_id: str, dimensions: int
) -> tuple[SQLiteStore, SQLiteDatabase]:
    """The SQLite store with its vector indexes loaded (saved again when the stack closes)."""
    database = SQLiteDatabase(settings.sqlite_path)
    try:
        await anyio.to_thread.run_sync(database.open)
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        raise DependencyError(f"cannot open {settings.sqlite_path}: {exc}") from exc
    stack.callback(database.close)
    store = SQLiteStore(database, settings.index_dir, model_id=model_id, dimensions=dimensions)
    await store.load_indexes()
    stack.push_async_callback(store.save_indexes)
    return store, database


async def _open_postgres(
    settings: Settings, stack: AsyncExitStack, *, max_size: int, wait_for_server: bool
) -> PostgresDatabase:
    """The pool, once the schema is the one this SKR needs. With ``wait_for_server`` off,
    an unreachable server is not an error: the process starts unready and recovers."""
    from skr.adapters.postgres_database import PostgresDatabase
    from skr.adapters.postgres_migrations import SCHEMA_VERSION, schema_version

    assert settings.database_url is not None
    database = PostgresDatabase(
        settings.database_url,
        min_size=min(settings.db_pool_min_size, max_size),
        max_size=max_size,
        pool_timeout_seconds=settings.db_pool_timeout_seconds,
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


async def embedded_backend(
    settings: Settings, embedder: Embedder, stack: AsyncExitStack
) -> Backend:
    store, database = await _open_sqlite(
        settings, stack, model_id=embedder.model_id, dimensions=embedder.dimensions
    )
    await store.ensure_collection(DEFAULT_COLLECTION, DEFAULT_TENANT)

    async def save_indexes_periodically() -> None:
        while True:
            await anyio.sleep(_INDEX_SAVE_SECONDS)
            try:
                await store.save_indexes()
            except (OSError, RuntimeError, DependencyError) as exc:
                # a full or read-only disk must not stop the server: the indexes are
                # derived from SQLite, and one whose save was lost is rebuilt at start
                logger.error("could not save the vector indexes (will try again): %s", exc)

    return Backend(
        store=store,
        job_queue=SQLiteJobQueue(database, max_attempts=settings.job_max_attempts),
        cache=MemoryCache(settings.cache_max_entries),
        job_events=MemoryJobEvents(),
        frontier=SQLiteCrawlFrontier(database),
        host_limiter=InMemoryHostLimiter(),
        api_keys=SQLiteApiKeyStore(database),
        background=[save_indexes_periodically],
    )


async def scale_out_backend(
    settings: Settings, embedder: Embedder, stack: AsyncExitStack
) -> Backend:
    from skr.adapters.postgres_api_keys import PostgresApiKeyStore
    from skr.adapters.postgres_crawl_frontier import PostgresCrawlFrontier
    from skr.adapters.postgres_job_queue import PostgresJobQueue
    from skr.adapters.postgres_store import PostgresStore

    database = await _open_postgres(
        settings, stack, max_size=settings.db_pool_max_size, wait_for_server=False
    )
    store = PostgresStore(database, model_id=embedder.model_id, dimensions=embedder.dimensions)
    backend = Backend(
        store=store,
        job_queue=PostgresJobQueue(database, max_attempts=settings.job_max_attempts),
        cache=MemoryCache(settings.cache_max_entries),
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


@asynccontextmanager
async def open_store(settings: Settings, *, model_id: str, dimensions: int) -> AsyncIterator[Store]:
    """The store the settings select and nothing else (no embedder, queue or cache), for
    commands that move stored vectors: SQLite with its vector indexes loaded and saved
    again on exit, or PostgreSQL once it answers with the schema this SKR needs."""
    async with AsyncExitStack() as stack:
        if settings.database_url is None:
            sqlite, _ = await _open_sqlite(
                settings, stack, model_id=model_id, dimensions=dimensions
            )
            yield sqlite
            return
        from skr.adapters.postgres_store import PostgresStore

        database = await _open_postgres(settings, stack, max_size=2, wait_for_server=True)
        yield PostgresStore(database, model_id=model_id, dimensions=dimensions)


@asynccontextmanager
async def open_key_store(settings: Settings) -> AsyncIterator[ApiKeyStore]:
    """The API keys of the store the settings select, and nothing else (for `skr keys`)."""
    async with AsyncExitStack() as stack:
        if settings.database_url is None:
            database = SQLiteDatabase(settings.sqlite_path)
            try:
                await anyio.to_thread.run_sync(database.open)
            except (sqlite3.Error, OSError, RuntimeError) as exc:
                raise DependencyError(f"cannot open {settings.sqlite_path}: {exc}") from exc
            stack.callback(database.close)
            yield SQLiteApiKeyStore(database)
            return
        from skr.adapters.postgres_api_keys import PostgresApiKeyStore

        pool = await _open_postgres(settings, stack, max_size=2, wait_for_server=True)
        yield PostgresApiKeyStore(pool)


async def _add_redis(settings: Settings, backend: Backend, stack: AsyncExitStack) -> None:
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from skr.adapters.redis_cache import RedisCache
    from skr.adapters.redis_host_limiter import RedisHostLimiter
    from skr.adapters.redis_job_events import RedisJobEvents
    from skr.adapters.resilient_cache import ResilientCache
    from skr.adapters.resilient_host_limiter import ResilientHostLimiter

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
    limiter_client = Redis.from_url(
        settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 1),
    )  # fmt: skip
    stack.push_async_callback(limiter_client.aclose)
    backend.host_limiter = ResilientHostLimiter(
        RedisHostLimiter(limiter_client), backend.host_limiter
    )

    async def redis_state() -> str:
        return "degraded: Redis unreachable, serving without it" if cache.degraded else "ok"

    backend.checks["redis"] = redis_state
