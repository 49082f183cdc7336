"""MemoryJobEvents: listeners that left are forgotten."""

from __future__ import annotations

import anyio
import pytest

from skr.adapters.memory.job_events import MemoryJobEvents

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_memory_events_forget_listeners_that_left() -> None:
    events = MemoryJobEvents()
    async with events.listen("job-1"), events.listen("job-1"), events.listen("job-2"):
        assert events.watched_jobs == 2
    assert events.watched_jobs == 0
    with anyio.move_on_after(0.05):
        async with events.listen("job-3") as listener:
            await listener.wait(10)  # cancelled while waiting
    assert events.watched_jobs == 0
