"""The Fetcher port: get one URL from the web, safely and within bounds."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from skr.domain.models import FetchedPage

HTML_MEDIA_TYPES: frozenset[str] = frozenset({"text/html", "application/xhtml+xml"})
"""What :meth:`Fetcher.fetch` accepts unless told otherwise."""


class Fetcher(Protocol):
    async def check_url(self, url: str) -> None:
        """``InvalidInputError`` for a URL SKR will not fetch (scheme, host), and
        ``BlockedURLError`` when the network guard refuses its resolved addresses."""
        ...

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: Collection[str] = HTML_MEDIA_TYPES,
        max_bytes: int | None = None,
    ) -> FetchedPage:
        """Fetch ``url`` following redirects; ``FetchError`` (or ``BlockedURLError``)
        with a reason a person understands on any failure. A 304 answer to a
        conditional request comes back as a page with ``status_code`` 304.

        ``accept`` lists the media types wanted (``"image/*"`` takes any image, ``"*/*"``
        anything); a body of another type is refused before it is read. ``max_bytes``
        lowers the fetcher's own size cap for this fetch."""
        ...
