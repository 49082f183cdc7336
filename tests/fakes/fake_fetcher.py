"""A Fetcher for unit tests: pages served from a dict, failures on demand."""

from __future__ import annotations

import hashlib
from collections.abc import Collection

from skr.domain.errors import FetchError, InvalidInputError
from skr.domain.models import FetchedPage
from skr.ports.fetcher import HTML_MEDIA_TYPES


class DictFetcher:
    def __init__(self, pages: dict[str, str] | None = None) -> None:
        self.pages: dict[str, str] = dict(pages or {})
        self.fetched: list[str] = []
        self.redirects: dict[str, str] = {}  # url -> where it redirects (followed at once)
        self.failures: dict[str, list[FetchError]] = {}  # url -> errors raised, first first

    async def check_url(self, url: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidInputError("only http and https URLs can be ingested")

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
        if self.failures.get(url):
            raise self.failures[url].pop(0)
        final = self.redirects.get(url, url)
        if final not in self.pages:
            raise FetchError("the server answered 404 Not Found", status=404)
        body = self.pages[final].encode()
        tag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if etag is not None and etag == tag:
            return FetchedPage(url, final, 304, "text/html", b"", etag=tag)
        return FetchedPage(url, final, 200, "text/html; charset=utf-8", body, etag=tag)
