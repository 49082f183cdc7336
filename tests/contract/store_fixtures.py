"""Builders of every Store, JobQueue and CrawlFrontier the contract suites run against."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from skr.adapters.postgres_database import PostgresDatabase
from skr.adapters.postgres_migrations import migrate
from skr.adapters.sqlite_crawl_frontier import SQLiteCrawlFrontier
from skr.adapters.sqlite_database import SQLiteDatabase
from skr.adapters.sqlite_job_queue import SQLiteJobQueue
from skr.adapters.sqlite_store import SQLiteStore
from skr.ports.crawl_frontier import CrawlFrontier
from skr.ports.job_queue import JobQueue
from tests.fakes.fake_crawl_frontier import InMemoryCrawlFrontier
from tests.fakes.fake_job_queue import InMemoryJobQueue
from tests.fakes.fake_store import InMemoryStore

DIMENSIONS = 384
MODEL_ID = "test-model"
STORE_KINDS = ["sqlite", "postgres", "memory-fake"]
QUEUE_KINDS = ["sqlite", "postgres", "memory-fake"]
FRONTIER_KINDS = ["sqlite", "postgres", "memory-fake"]
POSTGRES_URL = os.environ.get("SKR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@asynccontextmanager
async def open_sqlite(data_dir: Path) -> AsyncIterator[tuple[SQLiteStore, SQLiteDatabase]]:
    database = SQLiteDatabase(data_dir / "skr.sqlite3")
    database.open()
    store = SQLiteStore(database, data_dir / "ann", model_id=MODEL_ID, dimensions=DIMENSIONS)
    await store.load_indexes()
    try:
        yield store, database
    finally:
        database.close()


@asynccontextmanager
async def fresh_postgres(max_size: int = 4) -> AsyncIterator[PostgresDatabase]:
    """A migrated schema of its own on the local PostgreSQL, dropped afterwards, so runs
    never see each other's data. PostgreSQL being down is an error, not a skip."""
    schema = f"skr_test_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        await conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
        await migrate(conn, schema)
    database = PostgresDatabase(POSTGRES_URL, max_size=max_size, schema=schema)
    await database.open()
    try:
        yield database
    finally:
        await database.close()
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@asynccontextmanager
async def make_store(kind: str, data_dir: Path) -> AsyncIterator[object]:
    if kind == "memory-fake":
        yield InMemoryStore()
    elif kind == "postgres":
        from skr.adapters.postgres_store import PostgresStore

        async with fresh_postgres() as database:
            yield PostgresStore(database, model_id=MODEL_ID, dimensions=DIMENSIONS)
    else:
        async with open_sqlite(data_dir) as (store, _):
            yield store


@asynccontextmanager
async def make_queue(kind: str, data_dir: Path, max_attempts: int = 3) -> AsyncIterator[object]:
    if kind == "memory-fake":
        yield InMemoryJobQueue(max_attempts=max_attempts)
    elif kind == "postgres":
        from skr.adapters.postgres_job_queue import PostgresJobQueue

        async with fresh_postgres() as database:
            yield PostgresJobQueue(database, max_attempts=max_attempts)
    else:
        database = SQLiteDatabase(data_dir / "skr.sqlite3")
        database.open()
        try:
            yield SQLiteJobQueue(database, max_attempts=max_attempts)
        finally:
            database.close()


@asynccontextmanager
async def make_frontier(
    kind: str, data_dir: Path, max_attempts: int = 3
) -> AsyncIterator[tuple[JobQueue, CrawlFrontier]]:
    """A crawl frontier with the job queue on the same database, which holds the jobs its
    rows belong to."""
    if kind == "memory-fake":
        jobs = InMemoryJobQueue(max_attempts=max_attempts)
        yield jobs, InMemoryCrawlFrontier(jobs)
    elif kind == "postgres":
        from skr.adapters.postgres_crawl_frontier import PostgresCrawlFrontier
        from skr.adapters.postgres_job_queue import PostgresJobQueue

        async with fresh_postgres() as postgres:
            yield (
                PostgresJobQueue(postgres, max_attempts=max_attempts),
                PostgresCrawlFrontier(postgres),
            )
    else:
        sqlite = SQLiteDatabase(data_dir / "skr.sqlite3")
        sqlite.open()
        try:
            yield SQLiteJobQueue(sqlite, max_attempts=max_attempts), SQLiteCrawlFrontier(sqlite)
        finally:
            sqlite.close()
