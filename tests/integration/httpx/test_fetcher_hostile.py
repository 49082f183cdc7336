"""HttpxFetcher against the hostile site: every misbehaviour ends fast, in words, bounded.

Everything runs on 127.0.0.1. The one case that points elsewhere (a redirect to 10.0.0.1)
goes through the same injected resolver and loopback-only network backend as the guard
tests in test_httpx_fetcher.py, which fail the test on any connect off the loopback.
"""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from skr.adapters.httpx_fetcher import HttpxFetcher, _retry_after
from skr.domain.errors import BlockedURLError, FetchError
from skr.services.extraction.content_sniffing import looks_like_text
from skr.services.extraction.html import extract_page
from tests.e2e.hostile_site import (
    BINARY_BODY,
    BOMB_INFLATED_BYTES,
    CASES_LINKED,
    LOOP,
    MALFORMED_TEXT,
    OK_TITLE,
    PDF_BODY,
    PNG_BODY,
    RETRY_AFTER_SECONDS,
    UNAVAILABLE_SECONDS,
    HostileSite,
    gzip_bomb,
    hostile_site,
)
from tests.fixtures.network import PUBLIC_IP, FakeResolver, LoopbackOnlyBackend

pytestmark = pytest.mark.anyio

CAP = 1_000_000
TOTAL_TIMEOUT = 2.0
READ_TIMEOUT = 1.5  # more than the trickle's one second between bytes
MAX_REDIRECTS = 5
QUICKLY = 5.0
MEMORY_BOUND = 8_000_000  # eight times the cap; unbounded would be 1 GB or more
HOST = "hostile.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def site() -> Iterator[HostileSite]:
    with hostile_site() as running:
        yield running


@pytest.fixture
def backend() -> LoopbackOnlyBackend:
    return LoopbackOnlyBackend()


def _fetcher(backend: LoopbackOnlyBackend, **overrides: Any) -> HttpxFetcher:
    options: dict[str, Any] = {
        "user_agent": "SKR-test/1.0 (+hostile site)",
        "connect_timeout": 1.0,
        "read_timeout": READ_TIMEOUT,
        "total_timeout": TOTAL_TIMEOUT,
        "max_bytes": CAP,
        "max_redirects": MAX_REDIRECTS,
        "allow_private": True,  # the site is on 127.0.0.1
        "resolver": FakeResolver({HOST: [PUBLIC_IP]}),
        "network_backend": backend,
    }
    options.update(overrides)
    return HttpxFetcher(**options)


async def _refusal(fetcher: HttpxFetcher, url: str, **kwargs: Any) -> FetchError:
    """The FetchError ``fetch`` raises, once it has raised it within ``QUICKLY`` seconds."""
    started = anyio.current_time()
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(url, **kwargs)
    elapsed = anyio.current_time() - started
    assert elapsed < QUICKLY, f"{url} took {elapsed:.1f} s to fail"
    return caught.value


@dataclass(frozen=True)
class Expected:
    detail: str
    status: int | None = None
    transient: bool = False
    retry_after: float | None = None
    gone: bool = False


SILENT = "127.0.0.1:{port} sent nothing for 1.5 s"
TOO_LARGE = "page is larger than 1 MB"
EXPECTED = {
    "/missing": Expected("the server answered 404 Not Found", 404, gone=True),
    "/gone": Expected("the server answered 410 Gone", 410, gone=True),
    LOOP[0]: Expected(f"too many redirects (more than {MAX_REDIRECTS})"),
    "/slow-headers": Expected(SILENT, transient=True),
    "/trickle": Expected("timed out after 2 s", transient=True),
    "/never-ends": Expected(SILENT, transient=True),
    "/gzip-bomb": Expected(TOO_LARGE),
    "/huge": Expected(TOO_LARGE),
    "/huge-unannounced": Expected(TOO_LARGE),
    "/too-many": Expected(
        "the server answered 429 Too Many Requests",
        429,
        transient=True,
        retry_after=RETRY_AFTER_SECONDS,
    ),
    "/unavailable": Expected(
        "the server answered 503 Service Unavailable",
        503,
        transient=True,
        retry_after=UNAVAILABLE_SECONDS,
    ),
    "/error": Expected("the server answered 500 Internal Server Error", 500, transient=True),
    "/pdf": Expected("unsupported content type application/pdf; SKR ingests HTML pages"),
}


@pytest.mark.parametrize("path", list(EXPECTED))
async def test_each_hostile_case_fails_fast_and_says_why(
    site: HostileSite, backend: LoopbackOnlyBackend, path: str
) -> None:
    expected = EXPECTED[path]
    before = len(site.requests)
    async with _fetcher(backend) as fetcher:
        error = await _refusal(fetcher, site.url(path))
        # Whatever the case left behind in the pool, the next fetch is unharmed.
        assert (await fetcher.fetch(site.url("/ok.html"))).status_code == 200

    assert error.detail == expected.detail.format(port=site.port)
    assert error.status == expected.status
    assert error.transient is expected.transient
    assert error.gone is expected.gone
    if expected.retry_after is None:
        assert error.retry_after_seconds is None
    else:
        # An HTTP date has whole seconds, so a date 5 s ahead may read as 4.x s.
        assert error.retry_after_seconds is not None
        assert expected.retry_after - 1.5 < error.retry_after_seconds <= expected.retry_after
    hops = [LOOP[i % 2] for i in range(MAX_REDIRECTS + 1)] if path in LOOP else [path]
    assert site.requests[before:] == [*hops, "/ok.html"]
    assert {host for host, _ in backend.calls} == {"127.0.0.1"}


@pytest.mark.parametrize("path", ["/gzip-bomb", "/huge", "/huge-unannounced"])
async def test_memory_stays_bounded_on_endless_bodies(
    site: HostileSite, backend: LoopbackOnlyBackend, path: str
) -> None:
    async with _fetcher(backend) as fetcher:
        tracemalloc.start()
        try:
            error = await _refusal(fetcher, site.url(path))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert error.detail == TOO_LARGE
    assert peak < MEMORY_BOUND, f"{path} took {peak / 1e6:.1f} MB"


async def test_the_bomb_is_as_big_as_it_claims() -> None:
    bomb = gzip_bomb()
    assert len(bomb) < BOMB_INFLATED_BYTES // 1000
    _, size = struct.unpack("<II", bomb[-8:])
    assert size == BOMB_INFLATED_BYTES
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    start = inflater.decompress(bomb[:20_000], 10_000_000)
    assert len(start) == 10_000_000
    assert start == bytes(10_000_000)


async def test_max_bytes_lowers_the_cap_and_never_raises_it(
    site: HostileSite, backend: LoopbackOnlyBackend
) -> None:
    async with _fetcher(backend) as fetcher:
        error = await _refusal(fetcher, site.url("/ok.html"), max_bytes=100)
        assert error.detail == "page is larger than 100 bytes"
        error = await _refusal(fetcher, site.url("/gzip-bomb"), max_bytes=10_000)
        assert error.detail == "page is larger than 10 kB"
    async with _fetcher(backend, max_bytes=500) as fetcher:
        error = await _refusal(fetcher, site.url("/ok.html"), max_bytes=10 * CAP)
        assert error.detail == "page is larger than 500 bytes"
    assert error.transient is False


async def test_accept_lets_other_media_types_through(
    site: HostileSite, backend: LoopbackOnlyBackend
) -> None:
    async with _fetcher(backend) as fetcher:
        pdf = await fetcher.fetch(site.url("/pdf"), accept={"application/pdf"})
        png = await fetcher.fetch(site.url("/image.png"), accept={"image/*"})
        error = await _refusal(fetcher, site.url("/image.png"), accept={"application/pdf"})
    assert (pdf.body, pdf.content_type) == (PDF_BODY, "application/pdf")
    assert (png.body, png.content_type) == (PNG_BODY, "image/png")
    assert error.detail == "unsupported content type image/png; wanted application/pdf"


async def test_redirect_to_a_private_ip_is_refused_before_connecting(
    site: HostileSite, backend: LoopbackOnlyBackend
) -> None:
    before = len(site.requests)
    async with _fetcher(backend, allow_private=False) as fetcher:
        error = await _refusal(fetcher, site.url("/to-private", host=HOST))
    assert isinstance(error, BlockedURLError)
    assert error.detail.startswith("refused: 10.0.0.1 is a private address")
    assert error.transient is False
    assert backend.calls == [(PUBLIC_IP, site.port)]  # and never 10.0.0.1
    assert site.requests[before:] == ["/to-private"]


async def test_the_normal_page_leads_a_crawler_to_every_case(
    site: HostileSite, backend: LoopbackOnlyBackend
) -> None:
    async with _fetcher(backend) as fetcher:
        page = await fetcher.fetch(site.url("/ok.html"))
    extracted = extract_page(page.body, page.final_url)
    assert extracted.title == OK_TITLE
    assert set(extracted.links) >= {site.url(path) for path in CASES_LINKED}


async def test_binary_body_under_an_html_type_is_fetched_but_is_not_text(
    site: HostileSite, backend: LoopbackOnlyBackend
) -> None:
    async with _fetcher(backend) as fetcher:
        page = await fetcher.fetch(site.url("/binary.html"))
    assert page.content_type.startswith("text/html")
    assert page.body == BINARY_BODY
    assert not looks_like_text(page.body)


async def test_malformed_html_still_gives_its_text(
    site: HostileSite, backend: LoopbackOnlyBackend
) -> None:
    async with _fetcher(backend) as fetcher:
        page = await fetcher.fetch(site.url("/malformed.html"))
    assert looks_like_text(page.body)
    assert MALFORMED_TEXT in extract_page(page.body, page.final_url).text


NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("Wed, 01 Jan 2025 12:00:05 GMT", 5.0),
        ("Wed, 01 Jan 2025 13:00:00 +0100", 0.0),  # the same instant as NOW
        ("Wednesday, 01-Jan-25 12:01:00 GMT", 60.0),  # RFC 850, which HTTP still allows
        ("Tue, 31 Dec 2024 12:00:00 GMT", 0.0),  # already past
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("²", None),  # a digit to str.isdigit, not to float
        ("Wed, 32 Jan 2025 12:00:00 GMT", None),
    ],
)
def test_retry_after_parsing(value: str | None, seconds: float | None) -> None:
    assert _retry_after(value, now=NOW) == seconds
