"""Browser-test fixtures: the Flask docs on loopback, a real `skr serve`, a fake LLM, and
Debian's Chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import html
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from tests.e2e.servers import SHARED_SITE, SkrServer, free_port, static_site
from tests.fakes.fake_llm_server import FakeLLMServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--metrics-recording-only",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

XSS_TITLE = "<script>window.__xss=1</script>"
XSS_TEXT = "<img src=x onerror=window.__xss=2>"
# The page's title and text *are* that markup (escaped in its HTML source, as a browser reads it).
XSS_PAGE = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(XSS_TITLE)}</title></head>
<body><main><h1>Untrusted markup</h1>
<p>This page about hostile markup shows {html.escape(XSS_TEXT)} as plain text,
and a reader must see it exactly so. Hostile markup in scraped pages is data, never code.</p>
<p>Every title, passage and link that a crawler brings home is escaped before it is shown.</p>
</main></body></html>
"""
MISSING_LINK = '<p><a href="missing.html">A page that is not there</a></p></body>'


def write_site(root: Path) -> None:
    """The Flask docs, with a tutorial link to a missing page (a per-URL error) and the
    hostile page under /xss/."""
    shutil.copytree(SHARED_SITE, root, dirs_exist_ok=True)
    index = root / "tutorial" / "index.html"
    index.write_text(index.read_text().replace("</body>", MISSING_LINK, 1))
    (root / "xss").mkdir()
    (root / "xss" / "index.html").write_text(XSS_PAGE)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, type]]:
    if not SHARED_SITE.is_dir():
        pytest.fail(f"the Flask docs are missing: {SHARED_SITE}")
    root = tmp_path_factory.mktemp("browser-site")
    write_site(root)
    with static_site(root) as (base, handler):
        yield base, handler


@pytest.fixture(scope="session")
def llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, llm: FakeLLMServer) -> Iterator[SkrServer]:
    root = tmp_path_factory.mktemp("skr-browser")
    skr = SkrServer(
        root / "data", free_port(), root / "server.log",
        SKR_OCR_ENABLED="false", SKR_CRAWL_HOST_INTERVAL_SECONDS="0",
        SKR_JOB_LEASE_SECONDS="3", SKR_CRAWL_URL_LEASE_SECONDS="4",
        SKR_LLM_BASE_URL=llm.base_url, SKR_LLM_MAX_RETRIES="0", SKR_LLM_TIMEOUT_SECONDS="3",
    )  # fmt: skip
    skr.start()
    try:
        yield skr
    finally:
        skr.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module, not per session: Playwright's sync API keeps an asyncio loop running in
    this thread while it is open, and every async test after it would find that loop."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-chromium.sh (make services)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


class PageProblems:
    """Uncaught script errors and Content-Security-Policy refusals on SKR's pages (not on
    the crawled site's, which a citation opens and which are not SKR's to judge)."""

    def __init__(self, site_base: str) -> None:
        self.site_base = site_base
        self.messages: list[str] = []

    def watch(self, page: Page) -> None:
        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error" and "Content Security Policy" in message.text:
                self.messages.append(f"{page.url}: {message.text}")

        def on_page_error(error: Exception) -> None:
            if not page.url.startswith(self.site_base):
                self.messages.append(f"{page.url}: uncaught {error}")

        page.on("console", on_console)
        page.on("pageerror", on_page_error)


def open_context(browser: Browser, viewport: dict[str, int], **options: object) -> BrowserContext:
    context = browser.new_context(viewport=viewport, **options)  # type: ignore[arg-type]
    context.set_default_timeout(15_000)
    return context


@pytest.fixture
def page(browser: Browser, site: tuple[str, type]) -> Iterator[Page]:
    """A desktop-sized page; the test fails on any script error or CSP refusal."""
    context = open_context(browser, DESKTOP)
    problems = PageProblems(site[0])
    context.on("page", problems.watch)
    try:
        yield context.new_page()
    finally:
        context.close()
    assert problems.messages == []


@pytest.fixture
def phone(browser: Browser, site: tuple[str, type]) -> Iterator[Page]:
    """A phone-sized page with touch."""
    context = open_context(browser, PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    problems = PageProblems(site[0])
    context.on("page", problems.watch)
    try:
        yield context.new_page()
    finally:
        context.close()
    assert problems.messages == []


def screenshot(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
