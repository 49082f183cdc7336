"""Keep the objects a process made while starting out of the garbage collector's way.

A started SKR process holds ~130,000 long-lived Python objects (modules, FastAPI's routes
and pydantic models, the tokenizer, settings). CPython's full (generation 2) collection walks
every one of them: measured under 1,000 load users, each took ~125 ms, and the event loop
answered nothing meanwhile, a few times a minute. ``gc.freeze()`` moves everything alive at
that moment to a permanent generation the collector no longer walks, so later full
collections see only what the process made since. Call it once, when the process is ready;
only in served processes, never in tests (frozen garbage is never freed).
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def freeze_startup_heap() -> None:
    gc.collect()
    gc.freeze()
    logger.debug("%d startup objects frozen out of garbage collection", gc.get_freeze_count())
