"""The embedder's worker threads run queries before queued ingest batches."""

from __future__ import annotations

import threading
from concurrent.futures import TimeoutError as FutureTimeout

import pytest

from skr.runtime.priority_worker import BULK, INTERACTIVE, PriorityWorker


def test_interactive_work_overtakes_queued_bulk_work() -> None:
    worker = PriorityWorker("test")
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def in_flight() -> str:
        started.set()
        release.wait(5)
        ran.append("in-flight")
        return "done"

    first = worker.submit(BULK, in_flight)
    assert started.wait(5)
    bulk = [worker.submit(BULK, lambda i=i: ran.append(f"bulk{i}")) for i in range(3)]
    query = worker.submit(INTERACTIVE, lambda: ran.append("query"))
    release.set()
    assert first.result(5) == "done"
    query.result(5)
    for future in bulk:
        future.result(5)
    assert ran == ["in-flight", "query", "bulk0", "bulk1", "bulk2"]
    worker.shutdown()


def test_errors_reach_the_caller_and_shutdown_finishes_queued_work() -> None:
    worker = PriorityWorker("test")

    def boom() -> None:
        raise ValueError("bad batch")

    failing = worker.submit(BULK, boom)
    later = worker.submit(BULK, lambda: 42)
    worker.shutdown()
    with pytest.raises(ValueError, match="bad batch"):
        failing.result(0)
    assert later.result(0) == 42


def test_several_threads_run_calls_side_by_side_and_all_stop() -> None:
    worker = PriorityWorker("test", threads=2)
    both = threading.Barrier(2, timeout=5)  # breaks unless two calls run at the same time
    first = worker.submit(BULK, lambda: both.wait() is not None)
    second = worker.submit(BULK, lambda: both.wait() is not None)
    assert first.result(5) and second.result(5)
    worker.shutdown()  # returns: every thread took its stop
    late = worker.submit(BULK, lambda: 1)
    with pytest.raises(FutureTimeout):  # no thread is left to run it
        late.result(0.2)
