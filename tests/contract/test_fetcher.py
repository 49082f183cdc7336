"""The Fetcher contract: HttpxFetcher against an HTTP server on loopback, and the fake.

The real fetcher runs as in production (private and loopback addresses refused): the
site's name resolves to a public address that the test's network backend routes to the
loopback server, so no packet leaves the machine.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from skr.adapters.httpx_fetcher import HttpxFetcher
from skr.domain.errors import BlockedURLError, FetchError, InvalidInputError
from skr.ports.fetcher import Fetcher
from tests.fakes.fake_fetcher import DictFetcher
from tests.fixtures.kinds import class_id
from tests.fixtures.network import PUBLIC_IP, FakeResolver, LoopbackOnlyBackend

pytestmark = pytest.mark.anyio

HOST = "site.test"
PAGE = "<html><head><title>Hello</title></head><body><p>Hi there</p></body></html>"
OTHER = "<html><head><title>Other</title></head><body><p>Elsewhere</p></body></html>"
IMAGE = "GIF89a-not-really"
# path -> (content type, text): what the loopback server serves, and the fake too
FILES = {
    "/page": ("text/html; charset=utf-8", PAGE),
    "/other": ("text/html; charset=utf-8", OTHER),
    "/logo.gif": ("image/gif", IMAGE),
}
REDIRECTS = {"/moved": "/page"}
FETCHER_KINDS = [HttpxFetcher, DictFetcher]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path in REDIRECTS:
            self._send(302, b"", "text/html", Location=REDIRECTS[self.path])
            return
        if self.path not in FILES:
            self._send(404, b"<h1>Not Found</h1>", "text/html")
            return
        content_type, text = FILES[self.path]
        body = text.encode()
        if self.headers.get("If-None-Match") == _etag(body):
            self._send(304, b"", content_type, ETag=_etag(body))
        else:
            self._send(200, body, content_type, ETag=_etag(body))

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server_port() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@dataclass(frozen=True)
class Site:
    fetcher: Fetcher
    base: str

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture(params=FETCHER_KINDS, ids=class_id)
async def site(request: pytest.FixtureRequest) -> AsyncIterator[Site]:
    if request.param is DictFetcher:
        base = f"http://{HOST}:8080"
        fake = DictFetcher({base + path: text for path, (_, text) in FILES.items()})
        fake.redirects.update({base + old: base + new for old, new in REDIRECTS.items()})
        yield Site(fake, base)
        return
    port: int = request.getfixturevalue("server_port")
    fetcher = HttpxFetcher(
        user_agent="SKR-test/1.0 (+contract tests)",
        connect_timeout=1.0,
        read_timeout=2.0,
        total_timeout=3.0,
        resolver=FakeResolver({HOST: [PUBLIC_IP]}),
        network_backend=LoopbackOnlyBackend(),
    )
    async with fetcher:
        yield Site(fetcher, f"http://{HOST}:{port}")


async def test_a_page_comes_back_with_its_body_type_and_validator(site: Site) -> None:
    page = await site.fetcher.fetch(site.url("/page"))
    assert page.status_code == 200
    assert page.body == PAGE.encode()
    assert page.content_type.split(";")[0] == "text/html"
    assert page.url == page.final_url == site.url("/page")
    assert page.etag


async def test_redirects_are_followed_and_the_final_url_kept(site: Site) -> None:
    page = await site.fetcher.fetch(site.url("/moved"))
    assert page.url == site.url("/moved")
    assert page.final_url == site.url("/page")
    assert page.body == PAGE.encode()


async def test_a_missing_page_is_a_fetch_error_with_its_status(site: Site) -> None:
    with pytest.raises(FetchError) as caught:
        await site.fetcher.fetch(site.url("/missing"))
    assert caught.value.status == 404
    assert caught.value.gone
    assert caught.value.detail


async def test_an_unknown_host_is_a_fetch_error(site: Site) -> None:
    with pytest.raises(FetchError) as caught:
        await site.fetcher.fetch("http://nowhere.test/page")
    assert caught.value.detail


async def test_a_conditional_fetch_of_an_unchanged_page_is_a_304(site: Site) -> None:
    first = await site.fetcher.fetch(site.url("/page"))
    again = await site.fetcher.fetch(site.url("/page"), etag=first.etag)
    assert again.status_code == 304
    assert again.body == b""
    other = await site.fetcher.fetch(site.url("/other"), etag=first.etag)
    assert other.status_code == 200 and other.body == OTHER.encode()


async def test_accept_refuses_other_media_types_and_lets_the_wanted_ones_in(site: Site) -> None:
    with pytest.raises(FetchError):
        await site.fetcher.fetch(site.url("/logo.gif"))  # HTML only, unless told otherwise
    with pytest.raises(FetchError):
        await site.fetcher.fetch(site.url("/page"), accept={"image/*"})
    image = await site.fetcher.fetch(site.url("/logo.gif"), accept={"image/*"})
    assert image.content_type == "image/gif"
    assert image.body == IMAGE.encode()
    anything = await site.fetcher.fetch(site.url("/logo.gif"), accept={"*/*"})
    assert anything.body == IMAGE.encode()


async def test_max_bytes_refuses_a_larger_body(site: Site) -> None:
    size = len(PAGE.encode())
    with pytest.raises(FetchError, match="larger than"):
        await site.fetcher.fetch(site.url("/page"), max_bytes=size - 1)
    assert (await site.fetcher.fetch(site.url("/page"), max_bytes=size)).body == PAGE.encode()


async def test_check_url_accepts_a_public_http_url(site: Site) -> None:
    await site.fetcher.check_url(site.url("/page"))
    await site.fetcher.check_url(f"https://{HOST}/docs")


@pytest.mark.parametrize(
    "url", ["ftp://site.test/file", "site.test/page", "http://", "http://site.test:99999/"]
)
async def test_check_url_refuses_what_skr_will_not_fetch(site: Site, url: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await site.fetcher.check_url(url)
    assert not isinstance(caught.value, BlockedURLError)
    with pytest.raises(FetchError) as fetched:  # fetch speaks FetchError only
        await site.fetcher.fetch(url)
    assert not isinstance(fetched.value, BlockedURLError)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/page", "http://[::1]/", "http://10.0.0.1/", "http://169.254.169.254/"],
)
async def test_private_and_loopback_addresses_are_blocked(site: Site, url: str) -> None:
    with pytest.raises(BlockedURLError):
        await site.fetcher.check_url(url)
    with pytest.raises(BlockedURLError):
        await site.fetcher.fetch(url)
