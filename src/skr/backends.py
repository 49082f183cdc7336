"""The two ways to run, as factories the container picks from the settings: embedded
(SQLite + local HNSW + in-memory cache and job events) and scale-out (PostgreSQL + Redis)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from skr.adapters.memory_cache import MemoryCache
from skr.adapters.memory_job_events import MemoryJobEvents
from skr.adapters.sqlite_database import SQLiteDatabase
from skr.adapters.sqlite_job_queue import SQLiteJobQueue
from skr.adapters.sqlite_store import SQLiteStore
from skr.domain.errors import DependencyError
from skr.domain.models import DEFAULT_COLLECTION, DEFAULT_TENANT
from skr.ports.cache import Cache
from skr.ports.embedder import Embedder
from skr.ports.job_events import JobEvents
from skr.ports.job_queue import JobQueue
from skr.ports.store import Store
from skr.settings import Settings

logger = logging.getLogger(__name__)

_INDEX_SAVE_SECONDS = 30.0


@dataclass(slots=True)
class Backend:
    store: Store
    job_queue: JobQueue
    cache: Cache
    job_events: JobEvents
    checks: dict[str, Callable[[], Awaitable[str]]] = field(default_factory=dict)
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    pool_stats: Callable[[], Mapping[str, int]] | None = None


async def embedded_backend(
    settings: Settings, embedder: Embedder, stack: AsyncExitStack
) -> Backend:
    database = SQLiteDatabase(settings.sqlite_path)
    await anyio.to_thread.run_sync(database.open)
    stack.callback(database.close)
    store = SQLiteStore(
        database, settings.index_dir, model_id=embedder.model_id, dimensions=embedder.dimensions
    )
    await store.load_indexes()
    stack.push_async_callback(store.save_indexes)
    await store.ensure_collection(DEFAULT_COLLECTION, DEFAULT_TENANT)

    async def save_indexes_periodically() -> None:
        while True:
            await anyio.sleep(_INDEX_SAVE_SECONDS)
            await store.save_indexes()

    return Backend(
        store=store,
        job_queue=SQLiteJobQueue(database, max_attempts=settings.job_max_attempts),
        cache=MemoryCache(settings.cache_max_entries),
        job_events=MemoryJobEvents(),
        background=[save_indexes_periodically],
    )


async def scale_out_backend(
    settings: Settings, embedder: Embedder, stack: AsyncExitStack
) -> Backend:
    from skr.adapters.postgres_database import PostgresDatabase
    from skr.adapters.postgres_job_queue import PostgresJobQueue
    from skr.adapters.postgres_migrations import SCHEMA_VERSION, schema_version
    from skr.adapters.postgres_store import PostgresStore

    assert settings.database_url is not None
    database = PostgresDatabase(
        settings.database_url,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        pool_timeout_seconds=settings.db_pool_timeout_seconds,
    )
    await database.open()
    stack.push_async_callback(database.close)
    try:
        async with database.connection() as conn:
            version = await schema_version(conn)
    except DependencyError:
        logger.warning("PostgreSQL is not reachable yet; serving unready until it is")
        version = SCHEMA_VERSION
    if version != SCHEMA_VERSION:
        raise DependencyError(
            f"the database schema is at version {version}, this SKR needs {SCHEMA_VERSION}: "
            "run `skr migrate`"
        )
    store = PostgresStore(database, model_id=embedder.model_id, dimensions=embedder.dimensions)
    backend = Backend(
        store=store,
        job_queue=PostgresJobQueue(database, max_attempts=settings.job_max_attempts),
        cache=MemoryCache(settings.cache_max_entries),
        # Without Redis, events reach only this process's watchers; the API and the
        # workers are separate processes, so watchers fall back to re-reading the job.
        job_events=MemoryJobEvents(),
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
            database = SQLiteDatabase(settings.sqlite_path)
            try:
                await anyio.to_thread.run_sync(database.open)
            except (sqlite3.Error, OSError, RuntimeError) as exc:
                raise DependencyError(f"cannot open {settings.sqlite_path}: {exc}") from exc
            stack.callback(database.close)
            sqlite = SQLiteStore(
                database, settings.index_dir, model_id=model_id, dimensions=dimensions
            )
            await sqlite.load_indexes()
            stack.push_async_callback(sqlite.save_indexes)
            yield sqlite
            return
        import psycopg

        from skr.adapters.postgres_database import PostgresDatabase
        from skr.adapters.postgres_migrations import SCHEMA_VERSION, schema_version
        from skr.adapters.postgres_store import PostgresStore

        timeout = max(1, round(settings.db_pool_timeout_seconds))
        try:
            async with await psycopg.AsyncConnection.connect(
                settings.database_url, connect_timeout=timeout
            ) as conn:
                version = await schema_version(conn)
        except psycopg.Error as exc:
            raise DependencyError(f"PostgreSQL is unreachable: {exc}") from exc
        if version != SCHEMA_VERSION:
            raise DependencyError(
                f"the database schema is at version {version}, this SKR needs "
                f"{SCHEMA_VERSION}: run `skr migrate`"
            )
        database_pg = PostgresDatabase(
            settings.database_url, max_size=2, pool_timeout_seconds=settings.db_pool_timeout_seconds
        )
        await database_pg.open()
        stack.push_async_callback(database_pg.close)
        yield PostgresStore(database_pg, model_id=model_id, dimensions=dimensions)


async def _add_redis(settings: Settings, backend: Backend, stack: AsyncExitStack) -> None:
    from skr.adapters.redis_cache import RedisCache
    from skr.adapters.redis_job_events import RedisJobEvents
    from skr.adapters.resilient_cache import ResilientCache

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

    async def redis_state() -> str:
        return "degraded: Redis unreachable, serving without it" if cache.degraded else "ok"

    backend.checks["redis"] = redis_state
