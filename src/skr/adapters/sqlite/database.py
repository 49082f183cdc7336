"""One SQLite database in WAL mode: a single writer thread fed by a queue, concurrent readers."""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from skr.adapters.sqlite.schema import migrate
from skr.domain.errors import DependencyError

logger = logging.getLogger(__name__)

T = TypeVar("T")

_WriteItem = tuple[Callable[[sqlite3.Connection], Any], Callable[[Any], None] | None, "Future[Any]"]


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    uri = f"file:{path}?mode={'ro' if readonly else 'rwc'}"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


class SQLiteDatabase:
    """Owns the connections. ``write`` runs a function in one transaction on the writer
    thread; ``read`` runs a function on a pooled read connection in a worker thread."""

    def __init__(self, path: Path, *, readers: int = 4) -> None:
        self._path = path
        self._readers = readers
        self._queue: queue.Queue[_WriteItem | None] = queue.Queue()
        self._read_pool: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._thread: threading.Thread | None = None
        self._limiter = anyio.CapacityLimiter(readers)
        self._pool_lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path

    def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        writer = _connect(self._path, readonly=False)
        migrate(writer)
        self._thread = threading.Thread(
            target=self._writer_loop, args=(writer,), name="skr-sqlite-writer", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None
        for conn in self._all_readers:
            conn.close()
        self._all_readers.clear()

    def _writer_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                fn, after_commit, future = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = fn(conn)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                    if after_commit is not None:
                        # Runs on this thread, so derived state (the ANN index) changes
                        # in commit order.
                        after_commit(result)
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                    future.set_exception(exc)
                else:
                    future.set_result(result)
        finally:
            conn.close()

    def submit_write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        after_commit: Callable[[T], None] | None = None,
    ) -> Future[T]:
        if self._thread is None:
            raise DependencyError("the SQLite store is not open")
        future: Future[T] = Future()
        self._queue.put((fn, after_commit, future))
        return future

    async def write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        after_commit: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``fn`` in one transaction on the writer thread and return its result;
        ``after_commit`` then runs on the writer thread with that result."""
        try:
            return await asyncio.wrap_future(self.submit_write(fn, after_commit))
        except sqlite3.Error as exc:
            raise DependencyError(f"the SQLite store failed: {exc}") from exc

    def _borrow(self) -> sqlite3.Connection:
        try:
            return self._read_pool.get_nowait()
        except queue.Empty:
            conn = _connect(self._path, readonly=True)
            with self._pool_lock:
                self._all_readers.append(conn)
            return conn

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._borrow()
        try:
            return fn(conn)
        finally:
            self._read_pool.put(conn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await anyio.to_thread.run_sync(self.read_sync, fn, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise DependencyError(f"the SQLite store failed: {exc}") from exc
