"""The Fetcher adapter: httpx over a guarded connection pool, bounded in time, size, redirects."""

from __future__ import annotations

import email.utils
import errno
import ssl
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Self

import anyio
import httpcore
import httpx

from skr.adapters.httpx_transport import GuardedTransport
from skr.adapters.network_guard import (
    AddressPolicy,
    GuardedNetworkBackend,
    Resolver,
    SystemResolver,
    check_url,
    parse_http_url,
    url_host,
    url_port,
)
from skr.domain.errors import FetchError, InvalidInputError
from skr.domain.models import FetchedPage
from skr.ports.fetcher import HTML_MEDIA_TYPES

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"
# Only what _BodyDecoder undoes (httpx would also offer br or zstd if installed).
_ACCEPT_ENCODING = "gzip, deflate"

_ERRNO_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
}


class _BodyDecoder:
    """Undoes gzip or deflate without ever producing more than asked, so a gzip bomb
    stops at the size cap instead of expanding in memory."""

    def __init__(self, content_encoding: str) -> None:
        self._encoding = content_encoding.strip().lower()
        self._zlib: zlib._Decompress | None
        if self._encoding in ("", "identity"):
            self._zlib = None
        elif self._encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif self._encoding == "deflate":
            self._zlib = zlib.decompressobj()
        else:
            raise FetchError(f"unsupported content encoding {self._encoding}")
        self._started = False

    def decode(self, data: bytes, limit: int) -> bytes:
        """At most ``limit`` decoded bytes of ``data``; all of it when fewer come out."""
        if self._zlib is None:
            return data
        try:
            out = self._zlib.decompress(data, limit)
        except zlib.error as exc:
            if self._encoding != "deflate" or self._started:
                raise FetchError("the page could not be decompressed") from exc
            # Some servers send raw deflate without the zlib header, as httpx also allows.
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.decode(data, limit)
        self._started = True
        return out

    def flush(self) -> bytes:
        return self._zlib.flush() if self._zlib is not None else b""


def _size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:g} MB"
    if n >= 1000:
        return f"{n / 1000:g} kB"
    return f"{n} bytes"


def _connect_reason(exc: BaseException) -> str:
    current: BaseException | None = exc
    for _ in range(10):
        if current is None:
            break
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"TLS certificate not valid: {current.verify_message}"
        if isinstance(current, ssl.SSLError):
            return f"TLS failed: {current.reason}"
        if isinstance(current, OSError) and current.errno in _ERRNO_REASONS:
            return _ERRNO_REASONS[current.errno]
        current = current.__cause__ or current.__context__
    return str(exc) or type(exc).__name__


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class _Wanted:
    """What one fetch asks for."""

    accept: frozenset[str]
    max_bytes: int
    conditional: dict[str, str]


def _accepted(media_type: str, accept: frozenset[str]) -> bool:
    if "*/*" in accept or media_type in accept:
        return True
    major = media_type.partition("/")[0]
    return bool(major) and f"{major}/*" in accept


def _accept_header(accept: frozenset[str]) -> str:
    if accept == HTML_MEDIA_TYPES:
        return _ACCEPT
    return ",".join(sorted(accept)) + (",*/*;q=0.1" if "*/*" not in accept else "")


def _retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" is a digit to isdigit, not to float
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def _no_cookies() -> CookieJar:
    # Fetches for different collections and tenants share one client: keep no cookies.
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def _conditional_headers(etag: str | None, last_modified: str | None) -> dict[str, str]:
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def _redirect_target(response: httpx.Response) -> httpx.URL:
    location = response.headers["location"]
    try:
        joined = response.url.join(location).copy_with(fragment=None)
        return parse_http_url(str(joined))
    except httpx.InvalidURL as exc:
        raise FetchError(f"the server redirected to an invalid URL: {location}") from exc
    except InvalidInputError as exc:
        raise FetchError(f"the server redirected to {location}: {exc.detail}") from exc


class HttpxFetcher:
    """Fetches HTML pages through the network guard; call ``start()`` before ``fetch()``."""

    def __init__(
        self,
        *,
        user_agent: str,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        total_timeout: float = 30.0,
        max_bytes: int = 10_000_000,
        max_redirects: int = 5,
        allow_private: bool = False,
        resolver: Resolver | None = None,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._user_agent = user_agent
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._total_timeout = total_timeout
        self._max_bytes = max_bytes
        self._max_redirects = max_redirects
        self._policy = AddressPolicy(allow_private=allow_private)
        self._resolver = resolver if resolver is not None else SystemResolver()
        self._network_backend = network_backend
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is not None:
            return
        guard = GuardedNetworkBackend(
            resolver=self._resolver, policy=self._policy, inner=self._network_backend
        )
        pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=guard,
        )
        timeout = httpx.Timeout(
            connect=self._connect_timeout,
            read=self._read_timeout,
            write=self._read_timeout,
            pool=self._connect_timeout,
        )
        self._client = httpx.AsyncClient(
            transport=GuardedTransport(pool),
            timeout=timeout,
            follow_redirects=False,  # our own loop re-checks every hop
            trust_env=False,  # an environment proxy would bypass the guard
            cookies=_no_cookies(),
            headers={
                "User-Agent": self._user_agent,
                "Accept": _ACCEPT,
                "Accept-Encoding": _ACCEPT_ENCODING,
            },
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def check_url(self, url: str) -> None:
        await check_url(url, self._resolver, self._policy)

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: Collection[str] = HTML_MEDIA_TYPES,
        max_bytes: int | None = None,
    ) -> FetchedPage:
        if self._client is None:
            raise RuntimeError("HttpxFetcher.start() was not called")
        wanted = _Wanted(
            accept=frozenset(accept),
            max_bytes=self._max_bytes if max_bytes is None else min(max_bytes, self._max_bytes),
            conditional=_conditional_headers(etag, last_modified),
        )
        try:
            with anyio.fail_after(self._total_timeout):
                return await self._follow(self._client, url, wanted)
        except TimeoutError as exc:
            raise FetchError(f"timed out after {self._total_timeout:g} s", transient=True) from exc

    async def _follow(self, client: httpx.AsyncClient, url: str, wanted: _Wanted) -> FetchedPage:
        try:
            target = parse_http_url(url)
        except InvalidInputError as exc:
            raise FetchError(exc.detail) from exc
        for _ in range(self._max_redirects + 1):
            outcome = await self._fetch_once(client, url, target, wanted)
            if isinstance(outcome, FetchedPage):
                return outcome
            target = outcome
        raise FetchError(f"too many redirects (more than {self._max_redirects})")

    async def _fetch_once(
        self, client: httpx.AsyncClient, url: str, target: httpx.URL, wanted: _Wanted
    ) -> FetchedPage | httpx.URL:
        """The page at ``target``, or the URL it redirects to."""
        try:
            headers = {"Accept": _accept_header(wanted.accept), **wanted.conditional}
            async with client.stream("GET", target, headers=headers) as response:
                return await self._answer(url, response, wanted)
        except httpx.HTTPError as exc:
            raise self._fetch_error(exc, target) from exc

    async def _answer(
        self, url: str, response: httpx.Response, wanted: _Wanted
    ) -> FetchedPage | httpx.URL:
        status = response.status_code
        if status in _REDIRECT_STATUSES and "location" in response.headers:
            return _redirect_target(response)
        if status == 304 and wanted.conditional:
            return self._page(url, response, b"")
        if not 200 <= status < 300:
            reason = httpx.codes.get_reason_phrase(status) or response.reason_phrase
            raise FetchError(
                f"the server answered {status} {reason}".rstrip(),
                status=status,
                retry_after_seconds=_retry_after(response.headers.get("retry-after")),
                transient=status in _TRANSIENT_STATUSES,
            )
        content_type = response.headers.get("content-type", "")
        media_type = _media_type(content_type)
        if not _accepted(media_type, wanted.accept):
            shown = media_type or "(none)"
            wanted_types = (
                "SKR ingests HTML pages"
                if wanted.accept == HTML_MEDIA_TYPES
                else f"wanted {', '.join(sorted(wanted.accept))}"
            )
            raise FetchError(f"unsupported content type {shown}; {wanted_types}")
        return self._page(url, response, await self._read_body(response, wanted.max_bytes))

    def _page(self, url: str, response: httpx.Response, body: bytes) -> FetchedPage:
        return FetchedPage(
            url=url,
            final_url=str(response.url),
            status_code=response.status_code,
            content_type=response.headers.get("content-type", ""),
            body=body,
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
        )

    async def _read_body(self, response: httpx.Response, max_bytes: int) -> bytes:
        """The decoded body, refused as soon as it (or its encoded form) passes the cap."""
        too_large = FetchError(f"page is larger than {_size(max_bytes)}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise too_large
        decoder = _BodyDecoder(response.headers.get("content-encoding", ""))
        parts: list[bytes] = []
        raw_size = size = 0
        async for chunk in response.aiter_raw():
            raw_size += len(chunk)
            parts.append(decoder.decode(chunk, max_bytes - size + 1))
            size += len(parts[-1])
            if raw_size > max_bytes or size > max_bytes:
                raise too_large
        parts.append(decoder.flush())
        if size + len(parts[-1]) > max_bytes:
            raise too_large
        return b"".join(parts)

    def _fetch_error(self, exc: httpx.HTTPError, target: httpx.URL) -> FetchError:
        where = f"{url_host(target)}:{url_port(target)}"
        if isinstance(exc, httpx.ConnectTimeout):
            reason = f"timed out after {self._connect_timeout:g} s"
            return FetchError(f"could not connect to {where} ({reason})", transient=True)
        if isinstance(exc, httpx.ConnectError):
            reason = _connect_reason(exc)
            return FetchError(f"could not connect to {where} ({reason})", transient=True)
        if isinstance(exc, httpx.PoolTimeout):
            return FetchError(
                "too many fetches at once; no connection became free in time", transient=True
            )
        if isinstance(exc, httpx.TimeoutException):
            return FetchError(f"{where} sent nothing for {self._read_timeout:g} s", transient=True)
        if isinstance(exc, httpx.ProtocolError):
            return FetchError(f"{where} broke the HTTP protocol ({exc})")
        reason = _connect_reason(exc)
        return FetchError(f"the connection to {where} failed ({reason})", transient=True)
