"""InMemoryHostLimiter: its state stays bounded."""

from __future__ import annotations

import anyio
import pytest

from skr.adapters.memory.host_limiter import InMemoryHostLimiter

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_memory_limiter_forgets_idle_hosts_but_keeps_busy_ones() -> None:
    limiter = InMemoryHostLimiter(max_hosts=10)
    await limiter.hold_off("held.example", 30.0)
    for number in range(200):
        await limiter.wait_turn(f"h{number}.example", 0)
    assert len(limiter._hosts) <= 10
    assert "held.example" in limiter._hosts
    with anyio.move_on_after(0.3) as waited:
        await limiter.wait_turn("held.example", 0)
    assert waited.cancelled_caught
