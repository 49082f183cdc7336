"""Builders of every Store and JobQueue implementation the contract suites run against."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from skr.adapters.sqlite_database import SQLiteDatabase
from skr.adapters.sqlite_job_queue import SQLiteJobQueue
from skr.adapters.sqlite_store import SQLiteStore
from tests.fakes.fake_job_queue import InMemoryJobQueue
from tests.fakes.fake_store import InMemoryStore

DIMENSIONS = 384
MODEL_ID = "test-model"
STORE_KINDS = ["sqlite", "memory-fake"]
QUEUE_KINDS = ["sqlite", "memory-fake"]


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
async def make_store(kind: str, data_dir: Path) -> AsyncIterator[object]:
    if kind == "memory-fake":
        yield InMemoryStore()
        return
    async with open_sqlite(data_dir) as (store, _):
        yield store


@asynccontextmanager
async def make_queue(kind: str, data_dir: Path, max_attempts: int = 3) -> AsyncIterator[object]:
    if kind == "memory-fake":
        yield InMemoryJobQueue(max_attempts=max_attempts)
        return
    database = SQLiteDatabase(data_dir / "skr.sqlite3")
    database.open()
    try:
        yield SQLiteJobQueue(database, max_attempts=max_attempts)
    finally:
        database.close()
