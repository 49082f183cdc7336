"""The same page scaled out: an API process (no workers) and a `skr worker` sharing
PostgreSQL and Redis on loopback; a crawl added in the browser is worked by the other
process and its card still follows it live (the events cross processes through Redis)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_web_ui import CRAWL_TIMEOUT_MS, crawl_form, job_card
from tests.e2e.servers import SkrServer
from tests.e2e.test_scale_out import REDIS_URL, migrate, process
from tests.fixtures.stores import POSTGRES_URL

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def database_url() -> Iterator[str]:
    """A database of its own, dropped afterwards."""
    name = f"skr_browser_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def scale_out(tmp_path: Path, database_url: str) -> Iterator[SkrServer]:
    migrate(tmp_path, database_url)
    common = {"SKR_REDIS_URL": REDIS_URL, "SKR_OCR_ENABLED": "false"}
    api = process(tmp_path, "api", "serve", database_url, SKR_RUN_WORKERS="false", **common)
    worker = process(tmp_path, "worker", "worker", database_url, **common)
    worker.start()
    api.start()
    try:
        yield api
    finally:
        api.stop()
        worker.stop()


def test_the_page_works_scaled_out(
    page: Page, scale_out: SkrServer, site: tuple[str, type]
) -> None:
    base, _ = site
    start = f"{base}/tutorial/index.html"
    page.goto(f"{scale_out.url}/jobs")
    crawl_form(page, start, f"{base}/tutorial/", pages=6)
    page.get_by_role("button", name="Add").click()
    card = job_card(page, start)
    expect(card.locator("[data-field=status]")).to_have_text("succeeded", timeout=CRAWL_TIMEOUT_MS)
    expect(card.locator("[data-counter=indexed]")).not_to_have_text("0")
    screenshot(page, "scale-out-jobs")
    page.goto(f"{scale_out.url}/documents")
    expect(page.locator("tr.document").first).to_be_visible()
    page.goto(f"{scale_out.url}/search?q=tutorial+blog")
    expect(page.locator("li.hit mark").first).to_have_text(
        re.compile("tutorial|blog", re.IGNORECASE)
    )
