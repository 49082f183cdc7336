"""Text repeated across most pages of a site (navigation, footers, banners) kept out of
the index after it has been seen a few times, so it is not indexed over and over."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace

from skr.domain.models import ExtractedPage

MIN_PAGES = 3
"""A paragraph is boilerplate once this many earlier pages had it..."""
MIN_SHARE = 0.5
"""...and at least this share of the pages seen so far."""
_IMAGE = "\x00image "  # images are counted by their URL, apart from any text


def _key(paragraph: str) -> bytes:
    return hashlib.blake2b(" ".join(paragraph.split()).lower().encode(), digest_size=12).digest()


class SiteBoilerplate:
    """Counts, over the pages of one crawl, on how many pages each paragraph appears, and
    drops from a page the paragraphs that most earlier pages already had.

    The first pages of a crawl keep their copy (it is not yet known to repeat); from then
    on the repeated text is left out. Memory is bounded by ``max_paragraphs``: past it,
    paragraphs seen on a single page are forgotten first."""

    def __init__(self, *, min_pages: int = MIN_PAGES, min_share: float = MIN_SHARE,
                 max_paragraphs: int = 200_000) -> None:  # fmt: skip
        self._min_pages = min_pages
        self._min_share = min_share
        self._max_paragraphs = max_paragraphs
        self._pages = 0
        self._seen: Counter[bytes] = Counter()

    def is_boilerplate(self, paragraph: str) -> bool:
        count = self._seen.get(_key(paragraph), 0)
        return count >= self._min_pages and count >= self._min_share * self._pages

    def filter(self, page: ExtractedPage) -> ExtractedPage:
        """``page`` without its boilerplate paragraphs (sections left empty are dropped) and
        images (a logo on every page); the page's parts are counted afterwards."""
        sections: list[tuple[str, str]] = []
        for heading, text in page.sections:
            kept = [p for p in text.split("\n\n") if p.strip() and not self.is_boilerplate(p)]
            if kept:
                sections.append((heading, "\n\n".join(kept)))
        images = [i for i in page.images if not self.is_boilerplate(_IMAGE + i.src)]
        self._count(page)
        if sections == page.sections and images == page.images:
            return page
        text = "\n\n".join(body for _, body in sections)
        return replace(page, sections=sections, text=text, images=images)

    def _count(self, page: ExtractedPage) -> None:
        self._pages += 1
        keys = {_key(p) for _, text in page.sections for p in text.split("\n\n") if p.strip()}
        keys |= {_key(_IMAGE + image.src) for image in page.images}
        self._seen.update(keys)
        if len(self._seen) > self._max_paragraphs:
            self._seen = Counter({k: n for k, n in self._seen.items() if n > 1})
