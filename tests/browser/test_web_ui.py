"""The web page in a real browser: Chromium drives a real `skr serve` that crawls the Flask
tutorial on loopback; add a crawl and watch it live, control one, search, ask, follow a
citation, delete a document, a phone-sized window, the keyboard, and hostile markup."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import SCREENSHOTS, XSS_TEXT, XSS_TITLE, screenshot
from tests.e2e.servers import SkrServer
from tests.fakes.fake_llm_server import FakeLLMServer

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CRAWL_TIMEOUT_MS = 60_000
# Collects the job card's visible progress each time it changes, without reloading.
WATCH_PROGRESS = """card => {
  window.__progress = [];
  const seen = () => window.__progress.push({
    summary: card.querySelector('[data-field=summary]').textContent,
    rate: card.querySelector('[data-field=rate]').textContent,
    eta: card.querySelector('[data-field=eta]').textContent,
  });
  new MutationObserver(seen).observe(card, {subtree: true, childList: true, characterData: true});
}"""


def crawl_form(page: Page, url: str, prefix: str, *, depth: int = 1, pages: int = 30) -> None:
    page.get_by_label("URL", exact=True).fill(url)
    page.get_by_label("Crawl the site: follow its links from this page").check()
    page.get_by_label("Link depth").fill(str(depth))
    page.get_by_label("Page limit").fill(str(pages))
    page.get_by_label("Only URLs starting with (optional)").fill(prefix)


def job_card(page: Page, url: str) -> Locator:
    return page.locator(".job").filter(has=page.locator(f'a.job-url[href="{url}"]')).first


def documents(server: SkrServer, collection: str = "default") -> list[dict[str, object]]:
    params = {"collection": collection, "limit": 100}
    listed = httpx.get(f"{server.url}/v1/documents", params=params, timeout=10).json()
    return list(listed["documents"])


def wait_for_jobs(server: SkrServer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = httpx.get(f"{server.url}/v1/jobs", timeout=10).json()["jobs"]
        if all(j["status"] in {"succeeded", "failed", "cancelled", "paused"} for j in jobs):
            return
        time.sleep(0.1)
    raise AssertionError("jobs did not finish")


@pytest.fixture
def tutorial(server: SkrServer, site: tuple[str, type]) -> str:
    """The tutorial crawled into the default collection (by the first test, or here)."""
    base, _ = site
    if not documents(server):
        body = {
            "url": f"{base}/tutorial/index.html",
            "crawl": {"max_depth": 1, "max_pages": 30, "prefix": f"{base}/tutorial/"},
        }
        httpx.post(f"{server.url}/v1/ingest", json=body, timeout=10).raise_for_status()
    wait_for_jobs(server)
    assert documents(server)
    return base


def test_a_crawl_added_on_the_page_shows_live_progress_until_it_finishes(
    page: Page, server: SkrServer, site: tuple[str, type]
) -> None:
    base, _ = site
    start = f"{base}/tutorial/index.html"
    page.goto(f"{server.url}/jobs")
    page.evaluate("window.__sameDocument = true")
    crawl_form(page, start, f"{base}/tutorial/")
    page.get_by_role("button", name="Add").click()
    card = job_card(page, start)
    expect(card).to_be_visible()
    card.evaluate(WATCH_PROGRESS)
    expect(card.locator("[data-field=status]")).to_have_text("succeeded", timeout=CRAWL_TIMEOUT_MS)
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    progress = page.evaluate("window.__progress")
    summaries = [p["summary"] for p in progress]
    assert len(set(summaries)) >= 3, summaries  # counts moved while the page stayed
    assert any(re.fullmatch(r"\d+(\.\d+)? pages/s", p["rate"]) for p in progress), progress
    assert any(re.fullmatch(r"\d+ (s|min \d+ s)", p["eta"]) for p in progress), progress
    assert int(card.locator("[data-counter=indexed]").inner_text()) >= 10
    assert int(card.locator("[data-counter=failed]").inner_text()) == 1
    errors = card.locator(".job-errors")
    errors.locator("summary").click()
    expect(errors.locator("li")).to_have_count(1)
    expect(errors.locator("li")).to_contain_text(f"{base}/tutorial/missing.html")
    expect(errors.locator("li .reason")).to_contain_text("404")
    expect(card.get_by_role("button", name="Pause")).to_be_hidden()
    expect(page.locator("#announcer")).to_contain_text("succeeded")
    screenshot(page, "jobs")


def test_a_running_crawl_is_paused_resumed_and_cancelled_from_its_card(
    page: Page, server: SkrServer, site: tuple[str, type]
) -> None:
    base, handler = site
    page.goto(f"{server.url}/documents")
    page.get_by_label("New collection").fill("sandbox")
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/documents\?collection=sandbox$"))
    expect(page.locator(".collections [aria-current=page]")).to_have_text("sandbox")
    handler.delay_seconds = 0.5
    try:
        page.goto(f"{server.url}/jobs")
        start = f"{base}/tutorial/index.html"
        crawl_form(page, start, f"{base}/tutorial/")
        page.get_by_label("Collection").select_option("sandbox")
        page.get_by_role("button", name="Add").click()
        card = page.locator(".job").first
        expect(card.locator("[data-field=collection]")).to_have_text("sandbox")
        status = card.locator("[data-field=status]")
        card.get_by_role("button", name="Pause").click()
        expect(status).to_have_text("paused")
        expect(card.get_by_role("button", name="Resume")).to_be_visible()
        card.get_by_role("button", name="Resume").click()
        expect(status).to_have_text(re.compile("queued|running"))
        expect(status).to_have_text("running", timeout=CRAWL_TIMEOUT_MS)
        card.get_by_role("button", name="Cancel").click()
        expect(status).to_have_text("cancelled")
        expect(card.get_by_role("button", name="Cancel")).to_be_hidden()
    finally:
        handler.delay_seconds = 0.0
    job_id = card.get_attribute("data-job-id")
    job = httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "cancelled"
    wait_for_jobs(server)


def test_search_results_mark_the_query_words_and_link_their_source(
    page: Page, server: SkrServer, tutorial: str
) -> None:
    page.goto(server.url)
    screenshot(page, "home")
    page.get_by_role("searchbox", name="Search").fill("register the blueprint")
    page.get_by_role("searchbox", name="Search").press("Enter")
    expect(page).to_have_url(re.compile(r"/search\?q=register\+the\+blueprint"))
    hits = page.locator("li.hit-text")
    expect(hits.first).to_be_visible()
    marks = page.locator("li.hit mark").all_inner_texts()
    assert marks and all(re.match(r"(?i)(regist|blueprint)", m) for m in marks), marks
    first = hits.first.locator(".hit-title a")
    assert (first.get_attribute("href") or "").startswith(f"{tutorial}/tutorial/")
    assert first.get_attribute("rel") == "noreferrer"
    screenshot(page, "search")


def test_image_hits_are_lazy_thumbnails_with_caption_and_page_link(
    page: Page, server: SkrServer, tutorial: str
) -> None:
    page.goto(f"{server.url}/search?q=screenshot+of+login+page&kind=image")
    image_hit = (
        page.locator("li.hit-image").filter(has=page.locator('img[src$="flaskr_login.png"]')).first
    )
    thumbnail = image_hit.locator("img.thumbnail")
    expect(thumbnail).to_have_attribute("loading", "lazy")
    expect(thumbnail).to_have_attribute("referrerpolicy", "no-referrer")
    expect(thumbnail).to_have_attribute("alt", "screenshot of login page")
    thumbnail.scroll_into_view_if_needed()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle()
    )
    expect(image_hit.locator(".hit-caption")).to_have_text("screenshot of login page")
    expect(image_hit.locator(".hit-caption mark")).to_have_text(["screenshot", "login", "page"])
    page_link = image_hit.locator("figcaption a.hit-page")
    pages_showing_it = {f"{tutorial}/tutorial/{name}" for name in ("index.html", "static.html")}
    assert page_link.get_attribute("href") in pages_showing_it
    screenshot(page, "search-images")


def ask(page: Page, question: str) -> None:
    page.get_by_label("Ask a question").fill(question)
    with page.expect_response("**/v1/ask") as answered:
        page.get_by_role("button", name="Ask").click()
    assert answered.value.headers["content-type"].startswith("text/event-stream")
    expect(page.locator("#answer-text")).to_have_attribute("aria-busy", "false")


def test_an_answer_streams_in_and_its_citations_open_their_source(
    page: Page, server: SkrServer, tutorial: str
) -> None:
    page.goto(server.url)
    ask(page, "How do I define and register a blueprint?")
    answer = page.locator("#answer-text")
    expect(answer).to_have_attribute("aria-live", "polite")
    expect(answer).to_contain_text("According to the sources")
    expect(page.locator("#answer-mode")).to_contain_text("language model")
    expect(page.locator("#answer-degraded")).to_be_hidden()
    reference = answer.locator("a.cite-ref").first
    n = re.sub(r"\D", "", reference.inner_text())
    reference.click()
    citation = page.locator(f"#citation-{n}")
    expect(citation).to_be_focused()
    expect(citation.locator("blockquote")).not_to_be_empty()
    source = citation.locator(".citation-source a")
    href = source.get_attribute("href") or ""
    assert href.startswith(f"{tutorial}/tutorial/")
    screenshot(page, "ask")
    source.click()
    expect(page).to_have_url(href)
    assert "Flask" in page.title()


def test_a_degraded_answer_says_so(
    page: Page, server: SkrServer, tutorial: str, llm: FakeLLMServer
) -> None:
    llm.mode = "fail"
    try:
        page.goto(server.url)
        ask(page, "How do I define and register a blueprint?")
    finally:
        llm.mode = "ok"
    expect(page.locator("#answer-degraded")).to_be_visible()
    expect(page.locator("#answer-degraded")).to_contain_text("Degraded answer")
    expect(page.locator("#answer-mode")).to_contain_text("quoted from the sources")
    expect(page.locator("#citations li").first).to_be_visible()
    screenshot(page, "ask-degraded")


def test_the_library_lists_documents_and_deletes_one(
    page: Page, server: SkrServer, tutorial: str
) -> None:
    stored = documents(server)
    page.goto(f"{server.url}/documents")
    rows = page.locator("tr.document")
    expect(rows).to_have_count(len(stored))
    victim = next(d for d in stored if str(d["url"]).endswith("/tutorial/next.html"))
    row = page.locator(f'tr[data-document-id="{victim["id"]}"]')
    expect(row.locator("th")).to_have_text(str(victim["title"]))
    expect(row.locator("td.url")).to_have_text(str(victim["url"]))
    expect(row.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
    expect(row.locator("td[data-label=Chunks]")).to_have_text(str(victim["chunk_count"]))
    expect(row.locator("td[data-label=Images]")).to_have_text(str(victim["image_count"]))
    screenshot(page, "documents")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    expect(rows).to_have_count(len(stored) - 1)
    expect(page.locator("#announcer")).to_contain_text("Deleted")
    gone = httpx.get(f"{server.url}/v1/documents/{victim['id']}", timeout=10)
    assert gone.status_code == 404
    page.reload()
    expect(rows).to_have_count(len(stored) - 1)


def no_sideways_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_every_screen_fits_a_phone(phone: Page, server: SkrServer, tutorial: str) -> None:
    for path, name in (
        ("/", "phone-home"),
        ("/search?q=blueprint+views", "phone-search"),
        ("/documents", "phone-documents"),
        ("/jobs", "phone-jobs"),
    ):
        phone.goto(f"{server.url}{path}")
        assert no_sideways_scroll(phone), f"{path} scrolls sideways on a phone"
        expect(phone.get_by_role("navigation", name="Main")).to_be_visible()
        screenshot(phone, name)
    phone.goto(server.url)
    button = phone.get_by_role("button", name="Search")
    box, viewport = button.bounding_box(), phone.viewport_size
    assert box is not None and viewport is not None
    assert box["width"] > viewport["width"] * 0.8  # form controls stack on a phone
    phone.get_by_label("Ask a question").fill("How do I define and register a blueprint?")
    phone.get_by_role("button", name="Ask").tap()
    expect(phone.locator("#answer-text a.cite-ref").first).to_be_visible()
    assert no_sideways_scroll(phone)
    screenshot(phone, "phone-ask")


def test_the_page_is_usable_with_the_keyboard_and_has_landmarks_and_labels(
    page: Page, server: SkrServer, tutorial: str
) -> None:
    page.goto(server.url)
    for role in ("banner", "navigation", "main", "contentinfo", "search"):
        expect(page.get_by_role(role).first).to_be_attached()
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
             .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
             .map(e => e.id || e.name)"""
    )
    assert unlabelled == []
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.get_by_role("searchbox", name="Search")).to_be_focused()
    page.keyboard.type("blueprint views")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/search\?q=blueprint\+views"))
    expect(page.locator("li.hit").first).to_be_visible()
    page.goto(server.url)
    page.get_by_label("Ask a question").focus()
    page.keyboard.type("How do I define and register a blueprint?")
    page.keyboard.press("Enter")
    reference = page.locator("#answer-text a.cite-ref").first
    expect(reference).to_be_visible()
    reference.focus()
    page.keyboard.press("Enter")
    expect(page.locator(".citation.is-target")).to_be_focused()


def test_hostile_markup_from_a_page_is_shown_as_text_and_never_runs(
    page: Page, server: SkrServer, site: tuple[str, type], tutorial: str
) -> None:
    base, _ = site
    url = f"{base}/xss/index.html"
    page.goto(f"{server.url}/jobs")
    page.get_by_label("URL", exact=True).fill(url)
    page.get_by_role("button", name="Add").click()
    expect(job_card(page, url).locator("[data-field=status]")).to_have_text("succeeded")

    page.goto(f"{server.url}/documents")
    row = page.locator("tr.document").filter(has=page.locator(f'a[href="{url}"]'))
    expect(row.locator("th")).to_have_text(XSS_TITLE)
    screenshot(page, "xss-documents")

    page.goto(f"{server.url}/search?q=hostile+markup+onerror")
    hit = page.locator("li.hit-text").filter(has=page.locator(f'a[href="{url}"]')).first
    expect(hit.locator(".hit-title")).to_have_text(XSS_TITLE)
    expect(hit.locator(".hit-text")).to_contain_text(XSS_TEXT)
    screenshot(page, "xss-search")

    page.goto(server.url)
    ask(page, "What does the page about hostile markup show as plain text?")
    citation = page.locator("#citations li").filter(has=page.locator(f'a[href="{url}"]')).first
    expect(citation.locator(".citation-source a")).to_have_text(XSS_TITLE)
    expect(page.locator("#answer")).to_contain_text(XSS_TEXT)
    screenshot(page, "xss-ask")

    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("main script").count() == 0


def test_pages_send_a_content_security_policy_and_load_no_inline_script(
    server: SkrServer,
) -> None:
    for path in ("/", "/search?q=blueprint", "/documents", "/jobs"):
        response = httpx.get(f"{server.url}{path}", timeout=10)
        assert response.status_code == 200
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        scripts = re.findall(r"<script\b[^>]*>", response.text)
        assert scripts == ['<script src="/static/skr.js" defer>']
    assert SCREENSHOTS.is_dir()
