"""The web page on fakes: safe links, highlighting that escapes, the security headers, and
scraped markup rendered as text by the server (the browser tests drive the real thing)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from skr.entrypoints.api.app import create_app
from skr.entrypoints.web.templating import answer_parts, highlight, safe_url, snippet
from skr.settings import Settings
from tests.fakes.fake_container import fake_container_factory
from tests.unit.test_ingest_and_worker import PAGE, URL

HOSTILE_URL = "http://evil.test/page"
HOSTILE_PAGE = (
    "<html><head><title>&lt;script&gt;alert(1)&lt;/script&gt;</title></head><body><main>"
    "<h1>Hostile</h1><p>A hostile page says &lt;img src=x onerror=alert(2)&gt; about blueprint "
    "markup, and a reader must see it as text.</p></main></body></html>"
)
PAGES = ("/", "/search?q=blueprint", "/documents", "/jobs")


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "/relative/path",
        "//evil.test/x",
        "http://",
        "http:\\\\evil.test",
        "",
        None,
    ],
)
def test_safe_url_refuses_everything_but_absolute_http_urls(url: str | None) -> None:
    assert safe_url(url) is None


def test_safe_url_keeps_http_and_https() -> None:
    assert safe_url("https://flask.test/a?b=1#c") == "https://flask.test/a?b=1#c"
    assert safe_url("http://127.0.0.1:8000/x") == "http://127.0.0.1:8000/x"


def test_highlight_escapes_first_and_marks_whole_words() -> None:
    text = "Registering a <b>blueprint</b> & more blueprints"
    html = str(highlight(text, "register blueprint"))
    assert html == (
        "<mark>Registering</mark> a &lt;b&gt;<mark>blueprint</mark>&lt;/b&gt; &amp; more "
        "<mark>blueprints</mark>"
    )
    assert str(highlight("fish &amp; chips", "amp")) == "fish &amp;<mark>amp</mark>; chips"
    assert str(highlight("<script>", "the a of")) == "&lt;script&gt;"  # only stopwords


def test_snippet_starts_near_the_first_match() -> None:
    text = " ".join(["filler"] * 200) + " the blueprint is here " + " ".join(["tail"] * 100)
    cut = snippet(text, "blueprint", chars=120)
    assert cut.startswith("… ") and cut.endswith(" …") and "blueprint" in cut
    assert len(cut) <= 124


def test_answer_parts_link_only_citations_that_exist() -> None:
    parts = answer_parts("A [1]. B [3]. C [2]", {1, 2})
    assert parts == [("A ", None), ("[1]", 1), (". B [3]. C ", None), ("[2]", 2)]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path)
    app = create_app(settings, fake_container_factory({URL: PAGE, HOSTILE_URL: HOSTILE_PAGE}))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        for url in (URL, HOSTILE_URL):
            job = test_client.post("/v1/ingest", json={"url": url}).json()
            deadline = time.monotonic() + 5
            while test_client.get(f"/v1/jobs/{job['job_id']}").json()["status"] != "succeeded":
                assert time.monotonic() < deadline
                time.sleep(0.02)
        yield test_client


def test_every_page_sends_a_strict_policy_and_loads_only_its_own_script(
    client: TestClient,
) -> None:
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert "unsafe" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        scripts = re.findall(r"<script\b[^>]*>", response.text)
        assert scripts == ['<script src="/static/skr.js" defer>'], path
        assert not re.search(r"<[^>]+\son\w+=", response.text), path  # no inline handlers
    assert client.get("/static/skr.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/skr.css").headers["content-type"].startswith("text/css")


def test_scraped_markup_is_rendered_as_text(client: TestClient) -> None:
    for path in ("/documents", "/search?q=hostile+markup", "/jobs"):
        html = client.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/documents").text
    found = client.get("/search", params={"q": "hostile markup"}).text
    assert "&lt;img src=x onerror=alert(2)&gt;" in found
    assert "<mark>hostile</mark>" in found


def test_the_page_answers_without_javascript(client: TestClient) -> None:
    html = client.get("/", params={"question": "How is a blueprint registered?"}).text
    assert re.search(r'<a class="cite-ref" href="#citation-1"[^>]*>\[1\]</a>', html)
    assert 'id="citation-1"' in html and "<blockquote" in html


def test_an_unknown_collection_is_a_page_that_says_so(client: TestClient) -> None:
    response = client.get("/documents", params={"collection": "nope"})
    assert response.status_code == 404
    assert "There is no collection called “nope”" in response.text


def test_the_pages_stay_out_of_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not set(paths) & {"/", "/search", "/documents", "/jobs"}
