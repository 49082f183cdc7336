"""Hostile content for extraction: malformed and deeply nested HTML, huge attributes, lying
and invalid encodings, script and style payloads, floods of links and images, decompression
bombs (a gzip sitemap, a PDF FlateDecode stream) and binary junk. Each must end in a clean
result or a FetchError with a reason, within time and memory bounds.

Every case runs twice: once timed, once under tracemalloc for the peak of Python's heap
(tracing slows allocation-heavy code several times, so it is not timed). libxml2 allocates
outside Python's heap, so the process's peak resident size must not grow by more than
RSS_GROWTH_LIMIT either (ru_maxrss only rises, so this catches a blow-up, never a false one).
"""

from __future__ import annotations

import gc
import gzip
import logging
import os
import resource
import time
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from skr.domain.errors import FetchError
from skr.domain.models import ExtractedPage
from skr.services.crawl.sitemaps import MAX_SITEMAP_ENTRIES, SitemapDocument, parse_sitemap
from skr.services.extraction.html import MAX_LINKS, extract_page
from skr.services.extraction.html_images import MAX_IMAGES
from skr.services.extraction.pdf import MAX_PAGES, extract_pdf
from tests.unit.test_pdf_extraction import make_pdf

URL = "https://docs.example.org/guide/page.html"
TIME_LIMIT_SECONDS = 5.0
HEAP_LIMIT_BYTES = 150_000_000
RSS_GROWTH_LIMIT_BYTES = 400_000_000
MB = 1_000_000


@pytest.fixture(autouse=True)
def quiet_pypdf(caplog: pytest.LogCaptureFixture) -> None:
    """As SKR's logging config has it (skr.observability.logs): pypdf warns once per bad
    object, 36,000 times for one hostile file, and capturing those is what would be slow."""
    caplog.set_level(logging.ERROR, logger="pypdf")


@dataclass
class Outcome:
    result: Any
    error: FetchError | None
    seconds: float
    heap_peak: int


def run_bounded(call: Callable[[], Any]) -> Outcome:
    """``call``'s result or FetchError (anything else fails the test), within the bounds."""
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    result: Any = None
    error: FetchError | None = None
    try:
        result = call()
    except FetchError as exc:
        error = exc
    seconds = time.perf_counter() - started
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    result_kept, error_kept = result, error
    result = error = None
    gc.collect()
    tracemalloc.start()
    try:
        call()
    except FetchError:
        pass
    finally:
        heap_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert seconds < TIME_LIMIT_SECONDS, f"took {seconds:.1f} s"
    assert heap_peak < HEAP_LIMIT_BYTES, f"Python's heap peaked at {heap_peak / MB:.0f} MB"
    assert rss_growth < RSS_GROWTH_LIMIT_BYTES, f"resident size grew {rss_growth / MB:.0f} MB"
    if error_kept is not None:
        assert error_kept.detail.strip(), "a FetchError must say why"
    return Outcome(result_kept, error_kept, seconds, heap_peak)


def assert_clean_page(page: ExtractedPage) -> None:
    assert isinstance(page, ExtractedPage)
    assert page.title and len(page.title) <= 300
    assert all(text for _, text in page.sections)
    assert len(page.links) <= MAX_LINKS and len(page.images) <= MAX_IMAGES
    for text in indexed_texts(page):
        assert "\x00" not in text


def indexed_texts(page: ExtractedPage) -> list[str]:
    """Everything of a page that SKR stores and searches."""
    texts = [page.title, page.text]
    texts += [piece for section in page.sections for piece in section]
    texts += [image.searchable_text() for image in page.images]
    return texts


def _doc(body: str, head: str = "<title>Hostile</title>") -> str:
    return f"<!doctype html><html><head>{head}</head><body><main>{body}</main></body></html>"


# --- HTML ---------------------------------------------------------------------------------

HTML_CASES: dict[str, Callable[[], str | bytes]] = {
    # malformed and deeply nested
    "100k nested divs": lambda: _doc("<div>" * 100_000 + "deep" + "</div>" * 100_000),
    "100k nested inline tags": lambda: _doc("<b><i>" * 50_000 + "deep"),
    "100k nested lists": lambda: _doc("<ul><li>" * 50_000 + "deep"),
    "30k nested tables": lambda: _doc("<table><tr><td>" * 30_000 + "deep"),
    "100k stray end tags": lambda: _doc("<p>text</p>" + "</div></span></p>" * 100_000),
    "unclosed tag soup": lambda: "<html><body><p><b><i><div><table><tr><td>text" * 10_000,
    "10 MB of <": lambda: "<" * 10_000_000,
    "unterminated comment": lambda: _doc("<p>before</p><!-- " + "x" * 5_000_000),
    "unterminated attribute": lambda: _doc('<p title="' + "x" * 5_000_000),
    "bogus doctype and cdata": lambda: "<!doctype " + "x" * 1_000_000 + "<![CDATA[" * 100_000,
    # huge attributes
    "10 MB title attribute": lambda: _doc(f'<p title="{"a" * 10_000_000}">hi</p>'),
    "10 MB img src": lambda: _doc(f'<img src="/{"x" * 10_000_000}"><p>hi</p>'),
    "10 MB a href": lambda: _doc(f'<a href="/{"x" * 10_000_000}">link</a><p>hi</p>'),
    "10 MB img alt of words": lambda: _doc(f'<img src="/a.png" alt="{"word " * 2_000_000}">'),
    "10 MB srcset": lambda: _doc(f'<img srcset="{"a.png 1x, " * 1_000_000}"><p>hi</p>'),
    "10 MB style attribute": lambda: _doc(f'<img src="/a.png" style="{"width:1px;" * 1_000_000}">'),
    "10 MB title": lambda: _doc("", f"<title>{'word ' * 1_900_000}</title>"),
    "4 MB caption and heading": lambda: _doc(
        f'<h2>{"h " * 1_000_000}</h2><figure><img src="/a.png"><figcaption>{"c " * 1_000_000}'
    ),
    "10 MB og:title": lambda: _doc("", f'<meta property="og:title" content="{"t " * 5_000_000}">'),
    "10 MB class names": lambda: _doc(
        f'<div class="{"figure " * 1_400_000}"><img src="/a.png"><p class="caption">c</p></div>'
    ),
    # floods
    "45k links": lambda: _doc("".join(f'<a href="/l{i}">l{i}</a> ' for i in range(45_000))),
    "10k images": lambda: _doc(
        "".join(f'<img src="/i{i}.png" alt="a{i}"> w ' for i in range(10_000))
    ),
    "50k paragraphs": lambda: _doc("".join(f"<p>paragraph {i}</p>" for i in range(50_000))),
    "20k spans in one paragraph": lambda: _doc(
        "<p>" + "".join(f"<span>s{i}</span>" for i in range(20_000)) + "</p>"
    ),
    # encodings
    "bad utf-8": lambda: b"<html><body><p>" + b"\xff\xfe\xc3(\x80 text " * 100_000 + b"</p>",
    "utf-8 mixed with cp1252": lambda: ("<p>café ".encode() + b"na\xefve ") * 10_000,
    "utf-16-le without bom": lambda: _doc("<p>sixteen</p>" * 10_000).encode("utf-16-le"),
    "utf-16-be without bom": lambda: _doc("<p>sixteen</p>" * 10_000).encode("utf-16-be"),
    "utf-32 with bom": lambda: _doc("<p>thirty-two</p>").encode("utf-32"),
    "meta utf-8 over cp1252": lambda: b"<meta charset=utf-8><p>na\xefve caf\xe9 plain</p>",
    "meta shift_jis over utf-8": lambda: (
        b"<meta charset=shift_jis><p>" + "café plain ".encode() * 10_000
    ),
    "meta utf-16 over ascii": lambda: b"<meta charset=utf-16><p>plain ascii</p>",
    "meta punycode": lambda: b"<meta charset=punycode><p>plain \xe9</p>",
    "meta unicode_escape": lambda: b"<meta charset=unicode_escape><p>plain \\x00\\u0041</p>",
    "meta iso-2022-jp escapes": lambda: b"<meta charset=iso-2022-jp><p>" + b"\x1b$B" * 100_000,
    "lone surrogates in str": lambda: _doc("<p>bad \ud800 and \udfff chars</p>" * 1000),
    # binary junk
    "5 MB random bytes": lambda: os.urandom(5_000_000),
    "png": lambda: b"\x89PNG\r\n\x1a\n" + os.urandom(200_000),
    "gzip served as html": lambda: gzip.compress(_doc("<p>zipped</p>").encode() * 1000),
    "1 MB of NUL": lambda: b"<p>" + b"\x00" * 1_000_000 + b"</p>",
    "every byte value": lambda: bytes(range(256)) * 10_000,
}


@pytest.mark.parametrize("name", HTML_CASES)
def test_hostile_html_gives_a_clean_page_within_bounds(name: str) -> None:
    html = HTML_CASES[name]()
    outcome = run_bounded(lambda: extract_page(html, URL))
    assert outcome.error is None  # extract_page never raises; junk gives an empty page
    assert_clean_page(outcome.result)


def test_what_survives_hostile_encodings_is_the_text() -> None:
    assert "text" in extract_page(HTML_CASES["bad utf-8"](), URL).text
    mixed = extract_page(HTML_CASES["utf-8 mixed with cp1252"](), URL).text
    assert "café" in mixed and "na" in mixed
    assert "plain" in extract_page(HTML_CASES["meta utf-8 over cp1252"](), URL).text
    assert "plain ascii" in extract_page(HTML_CASES["meta utf-16 over ascii"](), URL).text
    for name in ("meta punycode", "meta unicode_escape"):  # never a code that rewrites bytes
        text = extract_page(HTML_CASES[name](), URL).text
        assert "plain" in text and "\x00" not in text and "A" not in text
    sixteen = extract_page(HTML_CASES["utf-16-le without bom"](), URL)
    assert sixteen.text in ("", "sixteen") or "sixteen" in sixteen.text


def test_utf7_is_never_decoded_so_no_markup_is_smuggled_through_it() -> None:
    """Browsers must not support UTF-7 (HTML standard); decoding it would turn
    ``+ADw-p+AD4-`` into ``<p>`` and text into markup."""
    page = extract_page(
        b"<meta charset=utf-7><p>visible +ADw-script+AD4-payload()+ADw-/script+AD4-</p>", URL
    )
    assert "+ADw-script+AD4-" in page.text


def test_floods_are_capped() -> None:
    links = extract_page(HTML_CASES["45k links"](), URL).links
    assert len(links) == MAX_LINKS and links[0] == "https://docs.example.org/l0"
    images = extract_page(HTML_CASES["10k images"](), URL).images
    assert len(images) == MAX_IMAGES and images[0].alt == "a0"


def test_huge_attributes_are_dropped_and_huge_texts_cut() -> None:
    [image] = extract_page(HTML_CASES["10 MB img alt of words"](), URL).images
    assert image.src == "https://docs.example.org/a.png" and image.alt == ""
    assert extract_page(HTML_CASES["10 MB og:title"](), URL).title == URL
    title = extract_page(HTML_CASES["10 MB title"](), URL).title
    assert title.startswith("word word") and len(title) <= 300


def test_a_page_too_large_for_main_text_search_still_gives_its_visible_text() -> None:
    page = extract_page(HTML_CASES["50k paragraphs"](), URL)
    assert "paragraph 0" in page.text and "paragraph 49999" in page.text


SCRIPT = "SCRIPTPAYLOAD"
STYLE = "STYLEPAYLOAD"
PAYLOAD_BODIES = {
    "scripts and styles": f"""
        <script>var s = "{SCRIPT}";</script><style>.x {{ content: "{STYLE}" }}</style>
        <h2>Heading<script>{SCRIPT}()</script></h2>
        <p>Real paragraph text that is long enough to be the main content of the page.
        <script>document.write("<p>{SCRIPT}</p>")</script> more real text.</p>
        <figure><img src="/fig.png" alt="figure"><script>{SCRIPT}</script>
        <style>{STYLE}</style><figcaption>Caption<script>{SCRIPT}</script></figcaption></figure>
        <script type="application/ld+json">{{"name": "{SCRIPT}"}}</script>
        <script>var t = "<!-- {SCRIPT} </scr" + "ipt>";</script>
        <svg><script>{SCRIPT}</script><style>{STYLE}</style><text>svg text</text></svg>
        <template><p>{SCRIPT}</p></template>
        <p>Closing paragraph of real text that a reader would want to find again.</p>""",
    "unclosed script at the end": f"<p>Real paragraph of text.</p><script>{SCRIPT} <p>in script",
    "unclosed style at the end": f"<p>Real paragraph of text.</p><style>{STYLE} <p>in style",
    "in a page too large for main text search": "<p>paragraph 0 "
    + "text " * 400_000
    + "".join(f"</p><script>{SCRIPT}</script><style>{STYLE}</style><p>{i}" for i in range(100)),
}


@pytest.mark.parametrize("name", PAYLOAD_BODIES)
def test_script_and_style_payloads_are_never_indexed(name: str) -> None:
    head = f"<title>Payloads</title><script>{SCRIPT}</script><style>{STYLE}</style>"
    outcome = run_bounded(lambda: extract_page(_doc(PAYLOAD_BODIES[name], head), URL))
    page = outcome.result
    assert_clean_page(page)
    assert "Real paragraph" in page.text or "paragraph 0" in page.text
    for text in indexed_texts(page):
        assert SCRIPT not in text and STYLE not in text, text[:300]


# --- PDF ----------------------------------------------------------------------------------


def pdf_with_content(compressed: bytes, *, pages: int = 1) -> bytes:
    """A PDF whose pages all draw one FlateDecode content stream (``compressed``)."""
    kids = " ".join(f"{5 + i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(compressed)
        + compressed
        + b"\nendstream",
    ]
    objects += [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
    ] * pages
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def deflated(piece: bytes, total: int, *, wbits: int = zlib.MAX_WBITS) -> bytes:
    """``total`` bytes of ``piece`` repeated, compressed without holding them all."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    out = bytearray()
    for _ in range(total // len(piece)):
        out += compressor.compress(piece)
    return bytes(out + compressor.flush())


TEXT_OPERATORS = b"BT /F1 12 Tf 72 720 Td (bomb) Tj ET\n"


@cache
def flate_bomb_pdf() -> bytes:
    return pdf_with_content(deflated(b"\x00" * 1_048_576, 256 * 1_048_576))  # 256 MB: 250 KB


def test_a_flatedecode_bomb_is_a_fetch_error_with_a_reason() -> None:
    data = flate_bomb_pdf()
    assert len(data) < 400_000
    outcome = run_bounded(lambda: extract_pdf(data, URL))
    assert outcome.error is not None and "cannot be read" in outcome.error.detail


def test_a_content_stream_of_millions_of_operators_is_a_fetch_error() -> None:
    data = pdf_with_content(deflated(TEXT_OPERATORS * 1000, 8 * MB))  # 8 MB of text operators
    outcome = run_bounded(lambda: extract_pdf(data, URL))
    assert outcome.error is not None and "cannot be read" in outcome.error.detail


def test_reading_a_pdf_stops_at_its_deadline_with_the_pages_read() -> None:
    """A thousand pages that all draw one heavy stream: each page is slow, all together
    would take minutes; the pages read by the deadline are kept."""
    heavy = deflated(TEXT_OPERATORS * 1000, MB // 4)  # under the token limit, slow to read
    data = pdf_with_content(heavy, pages=1000)
    outcome = run_bounded(lambda: extract_pdf(data, URL, max_seconds=0.5))
    page = outcome.result
    assert outcome.error is None and 1 <= len(page.sections) < 1000
    assert page.sections[0][0] == "Page 1" and "bomb" in page.sections[0][1]


PDF_CASES: dict[str, Callable[[], bytes]] = {
    "random bytes after a pdf header": lambda: b"%PDF-1.7\n" + os.urandom(500_000),
    "every byte value": lambda: b"%PDF-1.4\n" + bytes(range(256)) * 2_000,
    "100k nested arrays": lambda: make_pdf([["text"]]).replace(
        b"/MediaBox [0 0 612 792]", b"/MediaBox [0 0 612 792] /X " + b"[" * 100_000 + b"]" * 100_000
    ),
    "3000 nested dictionaries": lambda: make_pdf([["text"]]).replace(
        b"/MediaBox [0 0 612 792]",
        b"/MediaBox [0 0 612 792] /X " + b"<< /A " * 3_000 + b">>" * 3_000,
    ),
    "a page tree that contains itself": lambda: make_pdf([["text"]]).replace(
        b"/Kids [", b"/Kids [4 0 R "
    ),
    "a page count of a billion": lambda: make_pdf([["text"]]).replace(
        b"/Count 1", b"/Count 1000000000"
    ),
    "800 pages": lambda: make_pdf([[f"page {i}"] for i in range(800)]),
    "a truncated bomb": lambda: flate_bomb_pdf()[:150_000],
    "an xref that points nowhere": lambda: make_pdf([["text"]]).replace(
        b"startxref\n", b"startxref\n99999999"
    ),
    "a gzip sitemap served as a pdf": lambda: b"%PDF-" + gzip.compress(b"<urlset/>" * 1000),
}


@pytest.mark.parametrize("name", PDF_CASES)
def test_hostile_pdf_gives_text_or_a_fetch_error_within_bounds(name: str) -> None:
    data = PDF_CASES[name]()
    outcome = run_bounded(lambda: extract_pdf(data, URL))
    if outcome.error is None:
        page = outcome.result
        assert_clean_page(page)
        assert len(page.sections) <= MAX_PAGES
        assert all(heading.startswith("Page ") for heading, _ in page.sections)


# --- sitemaps -----------------------------------------------------------------------------

URLSET = b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'


@cache
def gzip_bomb() -> bytes:
    return deflated(b"\x00" * 1_048_576, 256 * 1_048_576, wbits=31)  # 256 MB of zeros: 250 kB


SITEMAP_CASES: dict[str, Callable[[], bytes]] = {
    "gzip bomb of 256 MB": gzip_bomb,
    "gzip bomb of valid entries": lambda: deflated(
        URLSET + b"<url><loc>https://e.org/a</loc></url>" * 28_000, 256 * 1_048_576, wbits=31
    ),
    "gzip inside gzip inside gzip": lambda: gzip.compress(
        gzip.compress(gzip.compress(URLSET + b"<url><loc>https://e.org/x</loc></url></urlset>"))
    ),
    "100k entries": lambda: (
        URLSET + b"".join(b"<url><loc>https://e.org/%d</loc></url>" % i for i in range(100_000))
    ),
    "2M lines of text": lambda: b"\n".join(b"https://e.org/%d" % i for i in range(2_200_000)),
    "100k nested elements": lambda: URLSET + b"<url>" * 100_000 + b"<loc>https://e.org/d</loc>",
    "10 MB loc": lambda: URLSET + b"<url><loc>https://e.org/" + b"a" * 10_000_000 + b"</loc></url>",
    "10 MB attribute": lambda: URLSET.replace(
        b"<urlset", b'<urlset x="' + b"a" * 10_000_000 + b'"'
    ),
    "300k bare ampersands": lambda: URLSET + b"<url><loc>https://e.org/?" + b"&a" * 300_000,
    "billion laughs": lambda: (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(b'<!ENTITY %c "%s">' % (98 + i, b"&%c;" % (97 + i) * 10) for i in range(9))
        + b"]><urlset><url><loc>https://e.org/&j;</loc></url></urlset>"
    ),
    "5 MB random bytes": lambda: os.urandom(5_000_000),
    "random bytes after <": lambda: b"<" + os.urandom(5_000_000),
    "utf-16 without bom": lambda: (
        (URLSET + b"<url><loc>https://e.org/u</loc></url></urlset>").decode().encode("utf-16-le")
    ),
}


@pytest.mark.parametrize("name", SITEMAP_CASES)
def test_hostile_sitemap_gives_entries_or_a_fetch_error_within_bounds(name: str) -> None:
    body = SITEMAP_CASES[name]()
    outcome = run_bounded(lambda: parse_sitemap(body))
    if outcome.error is None:
        document = outcome.result
        assert isinstance(document, SitemapDocument)
        entries = document.urls + document.sitemaps
        assert len(entries) <= MAX_SITEMAP_ENTRIES
        assert all(entry.loc.startswith("https://") and len(entry.loc) <= 4096 for entry in entries)


def test_sitemap_bombs_are_refused_and_floods_capped() -> None:
    with pytest.raises(FetchError, match="larger than 50 MiB"):
        parse_sitemap(gzip_bomb())
    assert len(parse_sitemap(SITEMAP_CASES["100k entries"]()).urls) == MAX_SITEMAP_ENTRIES
    assert len(parse_sitemap(SITEMAP_CASES["2M lines of text"]()).urls) == MAX_SITEMAP_ENTRIES
    nested = parse_sitemap(SITEMAP_CASES["gzip inside gzip inside gzip"]())
    assert nested.urls == []  # one layer of gzip is a sitemap; more is junk
