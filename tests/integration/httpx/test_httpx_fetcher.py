"""HttpxFetcher against real HTTP servers on 127.0.0.1; nothing ever leaves the loopback."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from skr.adapters.httpx_fetcher import HttpxFetcher
from skr.domain.errors import BlockedURLError, FetchError, InvalidInputError
from tests.fixtures.network import PUBLIC_IP, FakeResolver, LoopbackOnlyBackend

pytestmark = pytest.mark.anyio

HOSTS = {
    "public.test": [PUBLIC_IP],
    "private.test": ["10.0.0.1"],
    "linklocal.test": ["169.254.169.254"],
}
PAGE = b"<html><head><title>Hello</title></head><body><p>Hi there</p></body></html>"
USER_AGENT = "SKR-test/1.0 (+contract tests)"
CAP = 4000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class ServerState:
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


Route = Callable[[BaseHTTPRequestHandler, ServerState], None]


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", **headers: str) -> None:
    fields = {"Content-Type": "text/html; charset=utf-8"}
    if status != 304:
        fields["Content-Length"] = str(len(body))
    fields.update({name.replace("_", "-"): value for name, value in headers.items()})
    handler.send_response(status)
    for name, value in fields.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def _conditional(handler: BaseHTTPRequestHandler, state: ServerState) -> None:
    etag, modified = '"v1"', "Wed, 01 Jan 2025 00:00:00 GMT"
    if handler.headers.get("If-None-Match") == etag or (
        handler.headers.get("If-Modified-Since") == modified
    ):
        _send(handler, 304, ETag=etag, Last_Modified=modified)
    else:
        _send(handler, 200, PAGE, ETag=etag, Last_Modified=modified)


def _unsized_big(handler: BaseHTTPRequestHandler, state: ServerState) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html")
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.close_connection = True
    for _ in range(20):
        handler.wfile.write(b"<p>" + b"x" * 1000 + b"</p>")


def _slow(handler: BaseHTTPRequestHandler, state: ServerState) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.write(b"<html>")
    handler.wfile.flush()
    state.release.wait(5)


def _redirect(location: str) -> Route:
    return lambda handler, state: _send(handler, 302, Location=location)


def _hop(n: int) -> Route:
    return _redirect(f"/hop/{n - 1}" if n > 1 else "/page")


BOMB = gzip.compress(b"\0" * 2_000_000)
_deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
RAW_DEFLATE = _deflater.compress(PAGE) + _deflater.flush()
ROUTES: dict[str, Route] = {
    "/page": lambda h, s: _send(h, 200, PAGE, ETag='"p1"'),
    "/xhtml": lambda h, s: _send(h, 200, PAGE, Content_Type="application/xhtml+xml"),
    "/conditional": _conditional,
    **{f"/hop/{n}": _hop(n) for n in range(1, 5)},
    "/loop": _redirect("/loop"),
    "/big": lambda h, s: _send(h, 200, b"x" * (CAP + 1)),
    "/big-unsized": _unsized_big,
    "/bomb": lambda h, s: _send(h, 200, BOMB, Content_Encoding="gzip"),
    "/gzip": lambda h, s: _send(h, 200, gzip.compress(PAGE), Content_Encoding="gzip"),
    "/deflate": lambda h, s: _send(h, 200, RAW_DEFLATE, Content_Encoding="deflate"),
    "/slow": _slow,
    "/image": lambda h, s: _send(h, 200, b"\x89PNG", Content_Type="image/png"),
    "/to-private": _redirect("http://private.test/"),
    "/to-linklocal": _redirect("http://linklocal.test/latest/meta-data/"),
    "/to-ftp": _redirect("ftp://public.test/file"),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        state = self.server.state
        state.requests.append((self.path, dict(self.headers.items())))
        route = ROUTES.get(self.path)
        if route is None:
            _send(self, 404, b"<h1>Not Found</h1>")
        else:
            route(self, state)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ServerState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client hanging up mid-body is what several tests do on purpose


@dataclass
class LoopbackServer:
    port: int
    state: ServerState

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.state.requests]


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    state = ServerState()
    httpd = _Server(state)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield LoopbackServer(port=httpd.server_address[1], state=state)
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def backend() -> LoopbackOnlyBackend:
    return LoopbackOnlyBackend()


def _fetcher(backend: LoopbackOnlyBackend, **overrides: Any) -> HttpxFetcher:
    options: dict[str, Any] = {
        "user_agent": USER_AGENT,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        "total_timeout": 3.0,
        "max_bytes": CAP,
        "max_redirects": 5,
        "allow_private": True,
        "resolver": FakeResolver(HOSTS),
        "network_backend": backend,
    }
    options.update(overrides)
    return HttpxFetcher(**options)


async def test_fetches_an_html_page(server: LoopbackServer, backend: LoopbackOnlyBackend) -> None:
    async with _fetcher(backend) as fetcher:
        page = await fetcher.fetch(server.url("/page"))
    assert page.status_code == 200
    assert page.body == PAGE
    assert page.content_type == "text/html; charset=utf-8"
    assert page.url == page.final_url == server.url("/page")
    assert page.etag == '"p1"'
    headers = server.state.requests[0][1]
    assert headers["User-Agent"] == USER_AGENT
    assert headers["Accept-Encoding"] == "gzip, deflate"
    assert backend.calls == [("127.0.0.1", server.port)]


async def test_public_host_goes_through_the_guard_pinned(
    server: LoopbackServer, backend: LoopbackOnlyBackend
) -> None:
    async with _fetcher(backend, allow_private=False) as fetcher:
        page = await fetcher.fetch(server.url("/xhtml", host="public.test"))
    assert page.body == PAGE
    assert backend.calls == [(PUBLIC_IP, server.port)]
    assert server.state.requests[0][1]["Host"] == f"public.test:{server.port}"


@pytest.mark.parametrize("path", ["/gzip", "/deflate"])
async def test_compressed_pages_are_decoded(
    server: LoopbackServer, backend: LoopbackOnlyBackend, path: str
) -> None:
    async with _fetcher(backend) as fetcher:
        assert (await fetcher.fetch(server.url(path))).body == PAGE


async def test_redirect_chain_is_followed(
    server: LoopbackServer, backend: LoopbackOnlyBackend
) -> None:
    async with _fetcher(backend) as fetcher:
        page = await fetcher.fetch(server.url("/hop/4"))
    assert page.url == server.url("/hop/4")
    assert page.final_url == server.url("/page")
    assert page.body == PAGE
    assert server.paths == ["/hop/4", "/hop/3", "/hop/2", "/hop/1", "/page"]


@pytest.mark.parametrize(("path", "max_redirects"), [("/loop", 5), ("/hop/4", 3)])
async def test_too_many_redirects(
    server: LoopbackServer, backend: LoopbackOnlyBackend, path: str, max_redirects: int
) -> None:
    async with _fetcher(backend, max_redirects=max_redirects) as fetcher:
        with pytest.raises(FetchError) as caught:
            await fetcher.fetch(server.url(path))
    assert caught.value.detail == f"too many redirects (more than {max_redirects})"
    assert len(server.paths) == max_redirects + 1


@pytest.mark.parametrize("path", ["/big", "/big-unsized", "/bomb"])
async def test_bodies_over_the_cap_are_refused(
    server: LoopbackServer, backend: LoopbackOnlyBackend, path: str
) -> None:
    assert len(BOMB) < CAP  # so only counting decoded bytes can catch the bomb
    async with _fetcher(backend) as fetcher:
        with pytest.raises(FetchError) as caught:
            await fetcher.fetch(server.url(path))
    assert caught.value.detail == "page is larger than 4 kB"


async def test_total_deadline_covers_a_body_that_never_ends(
    server: LoopbackServer, backend: LoopbackOnlyBackend
) -> None:
    started = time.monotonic()
    async with _fetcher(backend, total_timeout=0.5, read_timeout=5.0) as fetcher:
        with pytest.raises(FetchError) as caught:
            await fetcher.fetch(server.url("/slow"))
    assert caught.value.detail == "timed out after 0.5 s"
    assert time.monotonic() - started < 2


async def test_read_timeout(server: LoopbackServer, backend: LoopbackOnlyBackend) -> None:
    async with _fetcher(backend, read_timeout=0.3) as fetcher:
        with pytest.raises(FetchError) as caught:
            await fetcher.fetch(server.url("/slow"))
    assert caught.value.detail == f"127.0.0.1:{server.port} sent nothing for 0.3 s"


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/image", "unsupported content type image/png; SKR ingests HTML pages"),
        ("/missing", "the server answered 404 Not Found"),
        ("/to-ftp", "only http and https URLs can be ingested, not ftp"),
    ],
)
async def test_unusable_answers_are_fetch_errors(
    server: LoopbackServer, backend: LoopbackOnlyBackend, path: str, detail: str
) -> None:
    async with _fetcher(backend) as fetcher:
        with pytest.raises(FetchError, match=detail):
            await fetcher.fetch(server.url(path))


@pytest.mark.parametrize(
    "condition", [{"etag": '"v1"'}, {"last_modified": "Wed, 01 Jan 2025 00:00:00 GMT"}]
)
async def test_conditional_request_gets_304(
    server: LoopbackServer, backend: LoopbackOnlyBackend, condition: dict[str, str]
) -> None:
    async with _fetcher(backend) as fetcher:
        page = await fetcher.fetch(server.url("/conditional"), **condition)
        fresh = await fetcher.fetch(server.url("/conditional"))
    assert page.status_code == 304
    assert page.body == b""
    assert page.etag == '"v1"'
    assert fresh.status_code == 200
    assert fresh.body == PAGE


async def test_redirect_to_a_private_host_is_blocked(
    server: LoopbackServer, backend: LoopbackOnlyBackend
) -> None:
    async with _fetcher(backend, allow_private=False) as fetcher:
        with pytest.raises(BlockedURLError) as caught:
            await fetcher.fetch(server.url("/to-private", host="public.test"))
    assert "private.test resolves to 10.0.0.1, a private address" in caught.value.detail
    assert backend.calls == [(PUBLIC_IP, server.port)]


async def test_redirect_to_link_local_is_blocked_even_when_private_is_allowed(
    server: LoopbackServer, backend: LoopbackOnlyBackend
) -> None:
    async with _fetcher(backend, allow_private=True) as fetcher:
        with pytest.raises(BlockedURLError, match="a link-local address"):
            await fetcher.fetch(server.url("/to-linklocal"))
    assert backend.calls == [("127.0.0.1", server.port)]


async def test_loopback_is_refused_by_default_before_any_request(
    server: LoopbackServer, backend: LoopbackOnlyBackend
) -> None:
    async with _fetcher(backend, allow_private=False) as fetcher:
        with pytest.raises(BlockedURLError, match="a loopback address"):
            await fetcher.fetch(server.url("/page"))
        with pytest.raises(BlockedURLError, match="a loopback address"):
            await fetcher.check_url(server.url("/page"))
    assert server.state.requests == []
    assert backend.calls == []


async def test_check_url(backend: LoopbackOnlyBackend) -> None:
    fetcher = _fetcher(backend, allow_private=False)
    await fetcher.check_url("https://public.test/docs")
    with pytest.raises(InvalidInputError) as caught:
        await fetcher.check_url("ftp://public.test/file")
    assert not isinstance(caught.value, BlockedURLError)
    with pytest.raises(BlockedURLError, match="link-local"):
        await fetcher.check_url("http://linklocal.test/")
    async with fetcher:
        with pytest.raises(FetchError, match="only http and https"):
            await fetcher.fetch("ftp://public.test/file")  # fetch speaks FetchError only
    assert backend.calls == []


async def test_connection_refused(backend: LoopbackOnlyBackend) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with _fetcher(backend) as fetcher:
        with pytest.raises(FetchError) as caught:
            await fetcher.fetch(f"http://127.0.0.1:{port}/")
    assert caught.value.detail == f"could not connect to 127.0.0.1:{port} (connection refused)"
    assert isinstance(caught.value.__cause__, Exception)


async def test_fetch_needs_start(backend: LoopbackOnlyBackend) -> None:
    with pytest.raises(RuntimeError, match="start"):
        await _fetcher(backend).fetch("http://public.test/")
