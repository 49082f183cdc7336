"""A Fetcher for unit tests: pages served from a dict, failures on demand."""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Collection
from urllib.parse import urlsplit

from skr.adapters.network_guard import AddressPolicy, is_ip_literal, parse_http_url, url_host
from skr.domain.errors import FetchError, InvalidInputError
from skr.domain.models import FetchedPage
from skr.ports.fetcher import HTML_MEDIA_TYPES


def _media_type(url: str) -> str:
    """What a static server would call the file at ``url``: by extension, else HTML."""
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    return guessed or "text/html"


def _accepted(media_type: str, accept: Collection[str]) -> bool:
    major = media_type.partition("/")[0]
    return "*/*" in accept or media_type in accept or f"{major}/*" in accept


class DictFetcher:
    """Serves ``pages`` (url -> text), typed by the URL's extension (HTML without one).

    It keeps the Fetcher's promises (tests/contract/test_fetcher.py): URLs are checked as
    the network guard checks them, with IP-literal hosts held to its address policy (every
    name counts as public: there is no DNS here); ``accept`` and ``max_bytes`` refuse
    bodies as the real fetcher does.
    """

    def __init__(self, pages: dict[str, str] | None = None, *, allow_private: bool = False) -> None:
        self.pages: dict[str, str] = dict(pages or {})
        self.fetched: list[str] = []
        self.redirects: dict[str, str] = {}  # url -> where it redirects (followed at once)
        self.failures: dict[str, list[FetchError]] = {}  # url -> errors raised, first first
        self._policy = AddressPolicy(allow_private=allow_private)

    async def check_url(self, url: str) -> None:
        host = url_host(parse_http_url(url))
        if is_ip_literal(host):
            self._policy.check(host)

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: Collection[str] = HTML_MEDIA_TYPES,
        max_bytes: int | None = None,
    ) -> FetchedPage:
        self.fetched.append(url)
        final = self.redirects.get(url, url)
        for checked in dict.fromkeys((url, final)):
            try:
                await self.check_url(checked)
            except InvalidInputError as exc:
                if isinstance(exc, FetchError):  # BlockedURLError is both
                    raise
                raise FetchError(exc.detail) from exc
        if self.failures.get(url):
            raise self.failures[url].pop(0)
        if final not in self.pages:
            raise FetchError("the server answered 404 Not Found", status=404)
        return self._answer(url, final, etag, accept, max_bytes)

    def _answer(
        self,
        url: str,
        final: str,
        etag: str | None,
        accept: Collection[str],
        max_bytes: int | None,
    ) -> FetchedPage:
        body = self.pages[final].encode()
        media_type = _media_type(final)
        if not _accepted(media_type, accept):
            raise FetchError(f"unsupported content type {media_type}")
        tag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if etag is not None and etag == tag:
            return FetchedPage(url, final, 304, media_type, b"", etag=tag)
        if max_bytes is not None and len(body) > max_bytes:
            raise FetchError(f"page is larger than {max_bytes} bytes")
        content_type = (
            f"{media_type}; charset=utf-8" if media_type.startswith("text/") else media_type
        )
        return FetchedPage(url, final, 200, content_type, body, etag=tag)
