"""Ingest work yields the CPU to requests: a higher nice value for the threads and
processes that extract, embed and read pages (``SKR_INGEST_NICENESS``).

On two cores a page being ingested (the embedding model on a core, extraction and OCR on
the other) leaves searches waiting for a core; niced, ingest work lets the event loop go
first. A niced thread still gets every core no request wants, so an idle server crawls as
fast as before (docs/benchmarks.md: "Load", runs Z3–Z4, and "Crawling the Flask docs").
"""

from __future__ import annotations

import logging
import os
import sys
import threading

logger = logging.getLogger(__name__)

MAX_NICENESS = 19


def lower_this_thread(niceness: int) -> None:
    """Add ``niceness`` to the calling thread's nice value (capped at 19).

    Linux keeps a nice value per thread, so this leaves the process's other threads (the
    event loop) as they were; elsewhere it does nothing. Lowering one's own priority
    needs no privilege; a refusal (a sandbox) is logged and ignored.
    """
    if niceness <= 0 or not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(MAX_NICENESS, thread_niceness() + niceness))
    except OSError as exc:
        logger.debug("could not lower the priority of thread %d: %s", thread, exc)


def thread_niceness() -> int:
    """The calling thread's nice value (Linux; elsewhere the process's)."""
    if sys.platform.startswith("linux"):
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    return os.getpriority(os.PRIO_PROCESS, 0)
