"""The embedded way to run: SQLite with local HNSW indexes, in-memory cache, events and limits."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import AsyncExitStack

import anyio

from skr.adapters.memory.cache import MemoryCache
from skr.adapters.memory.host_limiter import InMemoryHostLimiter
from skr.adapters.memory.job_events import MemoryJobEvents
from skr.adapters.sqlite.api_keys import SQLiteApiKeyStore
from skr.adapters.sqlite.crawl_frontier import SQLiteCrawlFrontier
from skr.adapters.sqlite.database import SQLiteDatabase
from skr.adapters.sqlite.job_queue import SQLiteJobQueue
from skr.adapters.sqlite.store import SQLiteStore
from skr.domain.errors import DependencyError
from skr.domain.models import DEFAULT_COLLECTION, DEFAULT_TENANT
from skr.ports.embedder import Embedder
from skr.settings import Settings
from skr.wiring.adapters import Backend

logger = logging.getLogger(__name__)

_INDEX_SAVE_SECONDS = 30.0


async def open_sqlite_database(settings: Settings, stack: AsyncExitStack) -> SQLiteDatabase:
    """The SQLite database of ``SKR_DATA_DIR``, closed when the stack closes."""
    database = SQLiteDatabase(settings.sqlite_path)
    try:
        await anyio.to_thread.run_sync(database.open)
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        raise DependencyError(f"cannot open {settings.sqlite_path}: {exc}") from exc
    stack.callback(database.close)
    return database


async def open_sqlite(
    settings: Settings, stack: AsyncExitStack, *, model_id: str, dimensions: int
) -> tuple[SQLiteStore, SQLiteDatabase]:
    """The SQLite store with its vector indexes loaded (saved again when the stack closes)."""
    database = await open_sqlite_database(settings, stack)
    store = SQLiteStore(database, settings.index_dir, model_id=model_id, dimensions=dimensions)
    await store.load_indexes()
    stack.push_async_callback(store.save_indexes)
    return store, database


async def embedded_backend(
    settings: Settings, embedder: Embedder, stack: AsyncExitStack
) -> Backend:
    store, database = await open_sqlite(
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
        job_queue=SQLiteJobQueue(database, max_attempts=settings.job.max_attempts),
        cache=MemoryCache(settings.cache.max_entries),
        job_events=MemoryJobEvents(),
        frontier=SQLiteCrawlFrontier(database),
        host_limiter=InMemoryHostLimiter(),
        api_keys=SQLiteApiKeyStore(database),
        background=[save_indexes_periodically],
    )
