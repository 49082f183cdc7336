"""The embedded JobEvents: in-process signals between tasks on one event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio


class MemoryJobListener:
    """One watcher of one job; changes that arrive while nobody waits are remembered."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def wait(self, timeout_seconds: float) -> bool:
        if not self._changed.is_set():
            with anyio.move_on_after(max(timeout_seconds, 0.0)):
                await self._changed.wait()
        changed = self._changed.is_set()
        self._changed.clear()
        return changed


class MemoryJobEvents:
    """Implements the JobEvents port in process, for the embedded mode where the API and
    the workers share one event loop. Any number of listeners per job; a listener is
    forgotten as soon as its ``listen`` block is left, and a job with none is forgotten
    too, so nothing grows with the number of jobs ever watched."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[MemoryJobListener]] = {}

    @property
    def watched_jobs(self) -> int:
        """Jobs that have at least one listener now."""
        return len(self._listeners)

    async def publish(self, job_id: str) -> None:
        for listener in self._listeners.get(job_id, ()):
            listener.notify()

    @asynccontextmanager
    async def listen(self, job_id: str) -> AsyncIterator[MemoryJobListener]:
        listener = MemoryJobListener()
        self._listeners.setdefault(job_id, set()).add(listener)
        try:
            yield listener
        finally:
            listeners = self._listeners.get(job_id)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._listeners[job_id]
