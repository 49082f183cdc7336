"""The store alone, or the API keys alone, for commands that need nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from skr.adapters.sqlite.api_keys import SQLiteApiKeyStore
from skr.ports.api_keys import ApiKeyStore
from skr.ports.store import Store
from skr.settings import Settings
from skr.wiring.embedded import open_sqlite, open_sqlite_database
from skr.wiring.scale_out import open_postgres


@asynccontextmanager
async def open_store(settings: Settings, *, model_id: str, dimensions: int) -> AsyncIterator[Store]:
    """The store the settings select and nothing else (no embedder, queue or cache), for
    commands that move stored vectors: SQLite with its vector indexes loaded and saved
    again on exit, or PostgreSQL once it answers with the schema this SKR needs."""
    async with AsyncExitStack() as stack:
        if settings.database_url is None:
            sqlite, _ = await open_sqlite(settings, stack, model_id=model_id, dimensions=dimensions)
            yield sqlite
            return
        from skr.adapters.postgres.store import PostgresStore

        database = await open_postgres(settings, stack, max_size=2, wait_for_server=True)
        yield PostgresStore(database, model_id=model_id, dimensions=dimensions)


@asynccontextmanager
async def open_key_store(settings: Settings) -> AsyncIterator[ApiKeyStore]:
    """The API keys of the store the settings select, and nothing else (for `skr keys`)."""
    async with AsyncExitStack() as stack:
        if settings.database_url is None:
            database = await open_sqlite_database(settings, stack)
            yield SQLiteApiKeyStore(database)
            return
        from skr.adapters.postgres.api_keys import PostgresApiKeyStore

        pool = await open_postgres(settings, stack, max_size=2, wait_for_server=True)
        yield PostgresApiKeyStore(pool)
