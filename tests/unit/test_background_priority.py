"""Ingest work yields the CPU: a thread's nice value is raised, its neighbours' are not."""

from __future__ import annotations

import sys
import threading

import pytest

from skr.runtime.priority_worker import BULK, PriorityWorker
from skr.runtime.thread_priority import MAX_NICENESS, lower_this_thread, thread_niceness

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="nice values are per thread on Linux only"
)


def in_a_thread(niceness: int) -> tuple[int, int]:
    """(nice value before, after) ``lower_this_thread(niceness)`` in a new thread."""
    seen: list[int] = []

    def run() -> None:
        seen.append(thread_niceness())
        lower_this_thread(niceness)
        seen.append(thread_niceness())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen[0], seen[1]


def test_a_thread_lowers_its_own_priority_and_no_other_thread_s() -> None:
    main_before = thread_niceness()
    before, after = in_a_thread(5)
    assert after == min(MAX_NICENESS, before + 5)
    assert thread_niceness() == main_before


def test_the_nice_value_stops_at_nineteen() -> None:
    _, after = in_a_thread(MAX_NICENESS + 30)
    assert after == MAX_NICENESS


def test_zero_changes_nothing() -> None:
    before, after = in_a_thread(0)
    assert after == before


def test_a_priority_worker_runs_its_calls_at_its_niceness() -> None:
    base = thread_niceness()
    niced, plain = PriorityWorker("niced", 2, niceness=4), PriorityWorker("plain", 1)
    try:
        on_niced = {niced.submit(BULK, thread_niceness).result(10) for _ in range(6)}
        on_plain = plain.submit(BULK, thread_niceness).result(10)
    finally:
        niced.shutdown()
        plain.shutdown()
    assert on_niced == {min(MAX_NICENESS, base + 4)}
    assert on_plain == base
