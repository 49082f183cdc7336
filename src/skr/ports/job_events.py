"""The JobEvents port: "this job changed" signals that wake whoever watches it."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

QUEUE_SIGNAL = "queue"
"""A reserved id, never a job's: published when a job was queued, so idle workers, who
listen to it between looks at the queue, take the job at once rather than at their
next poll."""


class JobListener(Protocol):
    async def wait(self, timeout_seconds: float) -> bool:
        """Wait until the job changes: True when it changed since listening began or since
        the last ``True``, False once ``timeout_seconds`` pass without a change. Never
        raises for a failed transport; it just returns False after the timeout."""
        ...


class JobEvents(Protocol):
    """Signals only: the job itself is always read again from the JobQueue, which stays
    the source of truth. A lost signal costs latency (watchers re-read on a timeout),
    never correctness."""

    async def publish(self, job_id: str) -> None:
        """The job's progress or status changed. Never raises: events are an
        optimisation, never a reason to fail a job."""
        ...

    def listen(self, job_id: str) -> AbstractAsyncContextManager[JobListener]:
        """Listen for changes of one job from the moment this is entered (so read the job
        after entering, not before); leaving it releases everything it held."""
        ...
