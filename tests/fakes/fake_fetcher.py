"""A Fetcher for unit tests: pages served from a dict, failures on demand."""

from __future__ import annotations

import hashlib

from skr.domain.errors import FetchError, InvalidInputError
from skr.domain.models import FetchedPage


class DictFetcher:
    def __init__(self, pages: dict[str, str] | None = None) -> None:
        self.pages: dict[str, str] = dict(pages or {})
        self.fetched: list[str] = []

    async def check_url(self, url: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidInputError("only http and https URLs can be ingested")

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchedPage:
        self.fetched.append(url)
        if url not in self.pages:
            raise FetchError("the server answered 404 Not Found")
        body = self.pages[url].encode()
        tag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if etag is not None and etag == tag:
            return FetchedPage(url, url, 304, "text/html", b"", etag=tag)
        return FetchedPage(url, url, 200, "text/html; charset=utf-8", body, etag=tag)
