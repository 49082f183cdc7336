"""extract_page: heading sections, images with context, links, and hostile input."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from skr.domain.models import ExtractedPage
from skr.services.extraction.html import extract_page

FLASK_DOCS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sites" / "flask-docs"
FLASK_URL = "https://flask.palletsprojects.com/en/2.2.x/"
PAGE_URL = "https://docs.example.com/guide/index.html"
FILLER = "Flask routes map URLs to view functions and keeps each handler small and readable."


def _document(body: str, head: str = "<title>Guide — Example Docs</title>") -> str:
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


ARTICLE = _document(
    f"""
    <nav><a href="/">Home</a> <a href="other.html#top">Other</a> <a href="other.html">Again</a>
      <a href="#local">Here</a> <a href="mailto:a@b.c">Mail</a> <a href="javascript:x()">JS</a>
      <a href="https://elsewhere.org/page?q=1#frag">Elsewhere</a></nav>
    <main><article>
      <h1>Guide</h1><p>Intro paragraph. {FILLER}</p>
      <h2>Routing</h2><p>Routing text. {FILLER}</p>
      <h3>Variable Rules</h3><p>Rules text. {FILLER}</p>
      <pre>@app.route('/user/&lt;name&gt;')
def show(name):
    return name</pre>
      <ul><li>first item of the list</li><li>second item of the list</li></ul>
      <h2>Templates</h2><p>Template text. {FILLER}</p>
      <table><tr><th>Name</th><th>Value</th></tr><tr><td>alpha</td><td>1</td></tr></table>
    </article></main>"""
)


def _extract(html: str | bytes, url: str = PAGE_URL) -> ExtractedPage:
    return extract_page(html, url)


def test_headings_become_heading_paths() -> None:
    page = _extract(ARTICLE)

    paths = [path for path, _ in page.sections]
    assert paths == [
        "Guide",
        "Guide > Routing",
        "Guide > Routing > Variable Rules",
        "Guide > Templates",
    ]
    assert page.sections[1][1] == f"Routing text. {FILLER}"


def test_paragraphs_code_lists_and_tables_survive() -> None:
    rules = dict(_extract(ARTICLE).sections)["Guide > Routing > Variable Rules"]
    templates = dict(_extract(ARTICLE).sections)["Guide > Templates"]

    paragraphs = rules.split("\n\n")
    assert paragraphs[0] == f"Rules text. {FILLER}"
    assert "@app.route('/user/<name>')\ndef show(name):\n    return name" in paragraphs
    assert "- first item of the list" in paragraphs
    assert "Name | Value\nalpha | 1" in templates.split("\n\n")


def test_page_text_holds_headings_and_paragraphs() -> None:
    page = _extract(ARTICLE)

    assert page.text.startswith(f"Guide\n\nIntro paragraph. {FILLER}")
    assert "Variable Rules" in page.text


def test_title_comes_from_title_then_og_title_then_url() -> None:
    og_only = _document(f"<p>{FILLER}</p>", head='<meta property="og:title" content="OG Guide">')

    assert _extract(ARTICLE).title == "Guide — Example Docs"
    assert _extract(og_only).title == "OG Guide"
    assert _extract(_document(f"<p>{FILLER}</p>", head="")).title == PAGE_URL


def test_links_are_absolute_without_fragments_deduplicated_in_order() -> None:
    assert _extract(ARTICLE).links == [
        "https://docs.example.com/",
        "https://docs.example.com/guide/other.html",
        "https://elsewhere.org/page?q=1",
    ]


def test_base_href_is_honoured_for_links_and_images() -> None:
    html = _document(
        f'<p>{FILLER} <a href="a.html">a</a> <img src="i.png" alt="pic"></p>',
        head='<base href="https://cdn.example.net/root/">',
    )

    page = _extract(html)

    assert page.links == ["https://cdn.example.net/root/a.html"]
    assert [image.src for image in page.images] == ["https://cdn.example.net/root/i.png"]


IMAGES = _document(
    f"""
    <p>Before the figure. {FILLER}</p>
    <figure><img src="../img/arch.png" alt="Architecture" title="The big picture">
      <figcaption>Figure 1: how requests flow</figcaption></figure>
    <div class="figure align-center"><img src="/static/sphinx.png" alt="">
      <p class="caption"><span class="caption-text">Sphinx caption</span><a class="headerlink">¶</a></p>
    </div>
    <p>The screenshot <img src="shot.png" alt="Login"> shows the login form. {FILLER}</p>
    <img src="icon.png" width="16" height="16" alt="icon">
    <img src="pixel.gif" width="1" height="1">
    <img src="styled.png" style="width: 10px; height: 10px">
    <img src="data:image/png;base64,AAAA" alt="inline">
    <img src="ftp://example.com/x.png" alt="ftp">
    <img src="shot.png" alt="duplicate">
    <img data-src="lazy.png" alt="Lazy">"""
)


def test_images_resolved_filtered_and_deduplicated() -> None:
    sources = [image.src for image in _extract(IMAGES).images]

    assert sources == [
        "https://docs.example.com/img/arch.png",
        "https://docs.example.com/static/sphinx.png",
        "https://docs.example.com/guide/shot.png",
        "https://docs.example.com/guide/lazy.png",
    ]


def test_image_captions_and_attributes() -> None:
    arch, sphinx, shot, _ = _extract(IMAGES).images

    assert (arch.alt, arch.title, arch.caption) == (
        "Architecture",
        "The big picture",
        "Figure 1: how requests flow",
    )
    assert sphinx.caption == "Sphinx caption"
    assert shot.alt == "Login"
    assert shot.caption == ""


def test_surrounding_text_is_the_enclosing_block_without_caption() -> None:
    arch, _, shot, _ = _extract(IMAGES).images

    assert shot.surrounding_text.startswith("The screenshot shows the login form.")
    assert "Figure 1" not in arch.surrounding_text
    assert "Before the figure." in arch.surrounding_text
    assert len(arch.surrounding_text) <= 310


def test_surrounding_text_is_a_window_around_the_image() -> None:
    words = " ".join(f"w{i}" for i in range(400))
    html = _document(f"<p>{words} <img src='a.png'> after the image {words}</p>")

    context = _extract(html).images[0].surrounding_text

    assert "after the image" in context
    assert len(context) <= 300


def test_tiny_page_falls_back_to_visible_text() -> None:
    html = _document("<p>Just a tiny page.</p><script>var hidden = 1;</script>")

    page = _extract(html)

    assert page.text == "Just a tiny page."
    assert page.sections == [("", "Just a tiny page.")]


def test_meta_charset_and_bad_bytes_are_decoded() -> None:
    latin = b"<html><head><meta charset='iso-8859-1'><title>Caf\xe9</title></head>"
    latin += b"<body><p>na\xefve</p></body></html>"
    broken = (
        b"<html><head><title>Ok</title></head><body><p>caf\xc3\xa9 \xff\xfe end</p></body></html>"
    )

    assert _extract(latin).title == "Café"
    assert "naïve" in _extract(latin).text
    assert "café" in _extract(broken).text
    assert "naïve" in _extract(b"<p>na\xefve caf\xe9</p>").text  # no charset, not UTF-8


def _deep(tag: str, depth: int) -> str:
    return _document(f"<{tag}>" * depth + "deep text" + f"</{tag}>" * depth)


HOSTILE: dict[str, str | bytes] = {
    "empty bytes": b"",
    "empty str": "",
    "whitespace": "   \n ",
    "binary junk": os.urandom(300_000),
    "all byte values": bytes(range(256)) * 1000,
    "bad utf-8": b"<html><body><p>\xff\xfe\xc3(\x80 text</p></body></html>",
    "nul bytes": b"<html><body><p>a\x00b</p>" + b"x" * 1000 + b"</body></html>",
    "nested divs": _deep("div", 10_000),
    "nested inline": _deep("b", 10_000),
    "nested lists": _document("<ul><li>" * 10_000 + "x" + "</li></ul>" * 10_000),
    "nested tables": _document("<table><tr><td>" * 3_000 + "x" + "</td></tr></table>" * 3_000),
    "huge attribute": _document(f'<p title="{"a" * 5_000_000}">hi</p><img src="{"x" * 100_000}">'),
    "unclosed tags": "<html><body><p><b><i><div><table><tr><td>text",
    "xml declaration": '<?xml version="1.0" encoding="utf-8"?><html><body><p>x</p></body></html>',
    "lone surrogate": "<html><body><p>bad \ud800 char</p></body></html>",
    "utf-16": "\ufeff<html><body><p>sixteen</p></body></html>".encode("utf-16"),
    "hostile charset": b"<meta charset='punycode'><p>\xe9</p>",
}


@pytest.mark.parametrize("html", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_returns_quickly_without_raising(html: str | bytes) -> None:
    started = time.perf_counter()

    page = _extract(html)

    assert time.perf_counter() - started < 2.0
    assert page.title
    assert all(text for _, text in page.sections)


def test_junk_gives_empty_text() -> None:
    page = _extract(bytes(range(256)) * 100)

    assert (page.text, page.sections, page.images, page.links) == ("", [], [], [])
    assert page.title == PAGE_URL


@pytest.mark.skipif(not FLASK_DOCS.is_dir(), reason="the shared Flask docs are not on this machine")
def test_real_flask_quickstart() -> None:
    html = (FLASK_DOCS / "quickstart.html").read_bytes()

    page = extract_page(html, FLASK_URL + "quickstart.html")

    sections = dict(page.sections)
    assert page.title.startswith("Quickstart")
    assert "Quickstart > Routing > Variable Rules" in sections
    assert (
        "@app.route('/user/<username>')\ndef show_user_profile(username):"
        in (sections["Quickstart > Routing > Variable Rules"])
    )
    assert not any("¶" in path for path in sections)
    debugger = next(image for image in page.images if image.src.endswith("debugger.png"))
    assert debugger.src == FLASK_URL + "_images/debugger.png"
    assert debugger.alt
    assert FLASK_URL + "installation.html" in page.links
    assert all(link.startswith("http") and "#" not in link for link in page.links)
