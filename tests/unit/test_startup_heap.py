"""A served process freezes the objects it made while starting out of garbage collection
(full collections walked all of them: ~125 ms pauses under load); tests never do."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from skr.entrypoints.api.app import create_app
from skr.settings import Settings
from tests.fakes.fake_container import fake_container_factory


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # frozen garbage is never freed: give the test process its heap back


@pytest.mark.usefixtures("unfrozen")
def test_a_served_app_freezes_its_startup_heap_once_ready(tmp_path: Path) -> None:
    app = create_app(
        Settings(data_dir=tmp_path),
        fake_container_factory({}),
        freeze_startup_heap_when_ready=True,
    )
    assert gc.get_freeze_count() == 0  # building the app loads nothing, freezes nothing
    with TestClient(app) as client:
        assert gc.get_freeze_count() > 10_000  # modules, routes, models: all of them
        assert client.get("/livez").status_code == 200


@pytest.mark.usefixtures("unfrozen")
def test_an_app_built_by_default_freezes_nothing(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path), fake_container_factory({}))):
        assert gc.get_freeze_count() == 0
