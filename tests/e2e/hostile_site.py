"""A hostile web server on 127.0.0.1: one path for each way a site can misbehave.

Raw asyncio streams in a thread rather than an HTTP framework, because several cases live
below HTTP (a body that never finishes, a lying Content-Length, a one-byte trickle). Every
answer closes its connection; a case that streams forever stops when the client hangs up,
and ``hostile_site()`` cancels whatever is still running when it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import random
import struct
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from http import HTTPStatus

BOMB_INFLATED_BYTES = 1 << 30
HUGE_DECLARED_BYTES = 2_147_483_648
NEVER_ENDS_DECLARED_BYTES = 10_000
NEVER_ENDS_SENT_BYTES = 100
RETRY_AFTER_SECONDS = 7
UNAVAILABLE_SECONDS = 5
SLOW_HEADERS_SECONDS = 60.0
PRIVATE_TARGET = "http://10.0.0.1/x"
LOOP = ("/loop-a", "/loop-b")
PDF_BODY = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
MALFORMED_TEXT = "Despite the broken markup this paragraph is real text about hostile servers"
MALFORMED_BODY = (
    "<html><head><title>Malformed &amp broken</titl></head>\n<body><div class='main'><p>"
    f"{MALFORMED_TEXT} &bogus; &#xZZZZ; &#99999999999; &#0;\n"
    "<p>Second paragraph with an <b>unclosed bold and <i>italic <span>spans"
    "<table><tr><td>cell<td>another cell</table></div></span></span></b>\n"
    '<a href="ok.html">back<</a <<>> <img src=x alt="unterminated>\n'
    '<p>Third paragraph after <a href="missing" <b>junk attributes</a> &amp;&amp;&&;; ends'
    "<script>if (a < b && c > d) { document.write('</p><p>') }</script>\n"
    "<!-- a comment that is never closed <p>hidden"
).encode()
OK_TITLE = "A perfectly normal page"
SITEMAP_PRIVATE_ENTRY = "http://internal.hostile.test/secret"
"""Listed in /sitemap.xml: a subdomain a test's resolver puts on a private address."""
SITEMAP_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
    f"<url><loc>{SITEMAP_PRIVATE_ENTRY}</loc></url></urlset>"
).encode()
CASES_LINKED = (
    "/missing",
    "/gone",
    *LOOP,
    "/slow-headers",
    "/trickle",
    "/never-ends",
    "/gzip-bomb",
    "/huge",
    "/huge-unannounced",
    "/binary.html",
    "/malformed.html",
    "/to-private",
    "/too-many",
    "/unavailable",
    "/error",
    "/pdf",
    "/image.png",
)
"""Every case /ok.html links to (all of them but /ok.html itself)."""

_MiB = 1 << 20
_STREAM_CHUNK = 64 * 1024

Case = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@functools.cache
def gzip_bomb(inflated_bytes: int = BOMB_INFLATED_BYTES) -> bytes:
    """One gzip member holding ``inflated_bytes`` zeros, about a thousandth of that in size.

    Deflate cannot do better than about 1:1000, so a 1 GiB bomb is about 1 MB. Zeros go in
    one MiB at a time with a full flush after each, which resets the compressor, so every
    MiB compresses to the same bytes: one MiB is compressed and its bytes repeated, which
    takes a fraction of a second instead of the seconds compressing 1 GiB would."""
    if inflated_bytes % _MiB:
        raise ValueError("the bomb is built in whole MiB")
    zeros = bytes(_MiB)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    again = deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    assert block == again, "zlib no longer compresses flushed blocks alike"
    crc = 0
    for _ in range(inflated_bytes // _MiB):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip, deflate, no name, no time
    trailer = struct.pack("<II", crc, inflated_bytes & 0xFFFFFFFF)
    blocks = block * (inflated_bytes // _MiB)
    return header + blocks + deflater.flush() + trailer


def _png() -> bytes:
    """A valid 1x1 grey PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + chunk(b"IEND", b"")
    )


PNG_BODY = _png()
BINARY_BODY = b"\x00\x01\x02\x03\xff\xfe" + random.Random(2024).randbytes(8192)


def _ok_page() -> bytes:
    links = "\n".join(f'<li><a href="{path.lstrip("/")}">{path}</a></li>' for path in CASES_LINKED)
    return (
        f"<!doctype html><html><head><title>{OK_TITLE}</title></head><body><main>"
        f"<h1>{OK_TITLE}</h1><p>Nothing to see here, but follow the links below.</p>"
        f"<ul>\n{links}\n</ul></main></body></html>"
    ).encode()


def _head(status: int, headers: Mapping[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def _send(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes = b"",
    content_type: str = "text/html; charset=utf-8",
    **extra: str,
) -> None:
    headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
    headers.update({name.replace("_", "-"): value for name, value in extra.items()})
    writer.write(_head(status, headers) + body)
    await writer.drain()


async def _hangup(reader: asyncio.StreamReader) -> None:
    """Returns once the client closes the connection."""
    with contextlib.suppress(OSError):
        while await reader.read(_STREAM_CHUNK):
            pass


async def _until_hangup(reader: asyncio.StreamReader, work: Awaitable[None]) -> None:
    """Runs ``work`` until it ends or the client hangs up, whichever comes first."""
    worker = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_hangup(reader))
    try:
        await asyncio.wait({worker, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        worker.cancel()
        watcher.cancel()
        await asyncio.gather(worker, watcher, return_exceptions=True)


async def _write_forever(writer: asyncio.StreamWriter, data: bytes, pause: float = 0.0) -> None:
    while True:
        writer.write(data)
        await writer.drain()
        await asyncio.sleep(pause)  # also lets the hang-up watcher run between writes


def _fixed(status: int, body: bytes = b"", **headers: str) -> Case:
    async def case(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _send(writer, status, body, **headers)

    return case


def _redirect(location: str) -> Case:
    return _fixed(302, b"", Location=location)


async def _slow_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    async def late() -> None:
        await asyncio.sleep(SLOW_HEADERS_SECONDS)
        await _send(writer, 200, b"<p>too late</p>")

    await _until_hangup(reader, late())


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(_head(200, {"Content-Type": "text/html"}) + b"<")
    await _until_hangup(reader, _write_forever(writer, b"p", pause=1.0))


async def _never_ends(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = {"Content-Type": "text/html", "Content-Length": str(NEVER_ENDS_DECLARED_BYTES)}
    writer.write(_head(200, head) + b"<html>".ljust(NEVER_ENDS_SENT_BYTES, b"x"))
    await writer.drain()
    await _hangup(reader)


async def _gzip_bomb(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # No Content-Length (the body ends when the connection does), so that only counting
    # inflated bytes can stop the client.
    async def send() -> None:
        writer.write(_head(200, {"Content-Type": "text/html", "Content-Encoding": "gzip"}))
        bomb = memoryview(gzip_bomb())
        for start in range(0, len(bomb), _STREAM_CHUNK):
            writer.write(bomb[start : start + _STREAM_CHUNK])
            await writer.drain()
            await asyncio.sleep(0)

    await _until_hangup(reader, send())


async def _huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = {"Content-Type": "text/html", "Content-Length": str(HUGE_DECLARED_BYTES)}
    writer.write(_head(200, head))
    await _until_hangup(reader, _write_forever(writer, bytes(_STREAM_CHUNK)))


async def _huge_unannounced(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(_head(200, {"Content-Type": "text/html", "Transfer-Encoding": "chunked"}))
    data = b"<p>" + b"a" * (_STREAM_CHUNK - 7) + b"</p>"
    await _until_hangup(reader, _write_forever(writer, b"%x\r\n%s\r\n" % (len(data), data)))


async def _unavailable(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    when = email.utils.formatdate(time.time() + UNAVAILABLE_SECONDS, usegmt=True)
    await _send(writer, 503, b"<p>down for maintenance</p>", Retry_After=when)


CASES: dict[str, Case] = {
    "/ok.html": _fixed(200, _ok_page()),
    "/missing": _fixed(404, b"<h1>Not Found</h1>"),
    "/gone": _fixed(410, b"<h1>Gone</h1>"),
    LOOP[0]: _redirect(LOOP[1]),
    LOOP[1]: _redirect(LOOP[0]),
    "/slow-headers": _slow_headers,
    "/trickle": _trickle,
    "/never-ends": _never_ends,
    "/gzip-bomb": _gzip_bomb,
    "/huge": _huge,
    "/huge-unannounced": _huge_unannounced,
    "/binary.html": _fixed(200, BINARY_BODY),
    "/malformed.html": _fixed(200, MALFORMED_BODY),
    "/to-private": _redirect(PRIVATE_TARGET),
    "/too-many": _fixed(429, b"<p>slow down</p>", Retry_After=str(RETRY_AFTER_SECONDS)),
    "/unavailable": _unavailable,
    "/error": _fixed(500, b"<h1>Internal Server Error</h1>"),
    "/pdf": _fixed(200, PDF_BODY, content_type="application/pdf"),
    "/image.png": _fixed(200, PNG_BODY, content_type="image/png"),
    "/sitemap.xml": _fixed(200, SITEMAP_BODY, content_type="application/xml"),
}
assert set(CASES) == {"/ok.html", "/sitemap.xml", *CASES_LINKED}


class HostileSite:
    """The running server: ``url(path)`` to address it, ``requests`` to see what was asked."""

    def __init__(self) -> None:
        self.port = 0
        self._paths: list[str] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hostile-site", daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    @property
    def requests(self) -> list[str]:
        """The paths requested so far, in order (a copy)."""
        with self._lock:
            return list(self._paths)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10) or self._failure is not None:
            raise RuntimeError("the hostile site did not start") from self._failure

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)
        self._thread.join(10)
        if self._thread.is_alive() or self._failure is not None:
            raise RuntimeError("the hostile site did not stop cleanly") from self._failure

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the thread that called start()
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path = request_line[1] if len(request_line) == 3 else ""
            with self._lock:
                self._paths.append(path)
            case = CASES.get(path, _fixed(404, b"<h1>Not Found</h1>"))
            with contextlib.suppress(OSError):  # the client hung up, as clients may
                await case(reader, writer)
        except asyncio.CancelledError:
            # Only stop() cancels; ending normally spares Python 3.11's streams from
            # logging the cancellation as an error.
            pass
        finally:
            self._connections.discard(task)
            if writer.transport.get_write_buffer_size():
                writer.transport.abort()  # unsent bytes for a client that stopped reading
            else:
                writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@contextlib.contextmanager
def hostile_site() -> Iterator[HostileSite]:
    """A :class:`HostileSite` serving on 127.0.0.1 for the duration of the block."""
    gzip_bomb()  # built (once) before serving, so the first /gzip-bomb is answered at once
    site = HostileSite()
    site.start()
    try:
        yield site
    finally:
        site.stop()
