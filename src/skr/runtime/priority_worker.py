"""Threads that run submitted calls most urgent first, then in submission order.

The embedding model runs on a few such threads. With a plain FIFO executor, a query's
embedding would wait behind every batch an ingest had already queued; here a query
(priority 0) waits at most for the batches in flight.
"""

from __future__ import annotations

import itertools
import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from skr.runtime.thread_priority import lower_this_thread

T = TypeVar("T")

INTERACTIVE = 0
BULK = 1

_Item = tuple[int, int, Callable[[], Any] | None, "Future[Any] | None"]


class PriorityWorker:
    """``niceness``: added to each thread's nice value (see ``skr.runtime.thread_priority``)."""

    def __init__(self, name: str, threads: int = 1, *, niceness: int = 0) -> None:
        self._niceness = niceness
        self._queue: queue.PriorityQueue[_Item] = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{n}", daemon=True)
            for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, priority: int, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((priority, next(self._order), fn, future))
        return future

    def shutdown(self) -> None:
        """Finish what was submitted, then stop the threads."""
        for _ in self._threads:
            self._queue.put((sys.maxsize, next(self._order), None, None))
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        lower_this_thread(self._niceness)
        while True:
            _, _, fn, future = self._queue.get()
            if fn is None or future is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)
            else:
                future.set_result(result)
