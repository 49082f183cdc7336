"""Embedded mode: a failing save of the vector indexes (disk full) is logged and tried
again; it does not stop the server."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest

from skr.settings import Settings
from skr.wiring import embedded
from tests.fakes.fake_embedder import FakeEmbedder

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_full_disk_does_not_stop_the_periodic_index_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(embedded, "_INDEX_SAVE_SECONDS", 0.01)
    attempts = 0

    async with AsyncExitStack() as stack:
        backend = await embedded.embedded_backend(
            Settings(data_dir=tmp_path), FakeEmbedder(), stack
        )

        async def full_disk() -> None:
            nonlocal attempts
            attempts += 1
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(backend.store, "save_indexes", full_disk)
        [periodic] = backend.background
        with caplog.at_level(logging.ERROR, logger="skr.wiring.embedded"), anyio.move_on_after(0.3):
            await periodic()
    assert attempts >= 3  # it kept trying
    assert "No space left on device" in caplog.text
