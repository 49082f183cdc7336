"""Keep the objects a process made while starting out of the garbage collector's way.

A started SKR process holds many long-lived Python objects (modules, FastAPI's routes and
pydantic models, the tokenizer, settings). CPython's full (generation 2) collection walks
every one of them, and the event loop answers nothing meanwhile: under load that stall
came a few times a minute and showed in the tail latency (docs/benchmarks/history.md,
runs U–W). ``gc.freeze()`` moves everything alive at that moment to a permanent
generation the collector no longer walks, so later full collections see only what the
process made since. Call it once, when the process is ready; only in served processes,
never in tests (frozen garbage is never freed).
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def freeze_startup_heap() -> None:
    gc.collect()
    gc.freeze()
    logger.debug("%d startup objects frozen out of garbage collection", gc.get_freeze_count())
