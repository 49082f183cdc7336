"""Ingest one page: fetch, extract, split, embed and store it, skipping unchanged content."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from enum import StrEnum

import anyio.to_thread

from skr.domain.errors import FetchError
from skr.domain.models import Document, ExtractedPage, PageWrite
from skr.ports.cache import Cache
from skr.ports.embedder import Embedder
from skr.ports.fetcher import Fetcher
from skr.ports.store import Store
from skr.services.chunking import chunk_embedding_text, split_into_chunks
from skr.services.extraction import extract_page

logger = logging.getLogger(__name__)


class PageOutcomeKind(StrEnum):
    INDEXED = "indexed"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class PageOutcome:
    kind: PageOutcomeKind
    document: Document | None
    chunks: int


def content_hash(page: ExtractedPage) -> str:
    """A hash of what SKR keeps of a page, so that markup-only changes cost nothing."""
    digest = hashlib.sha256()
    digest.update(page.title.encode())
    for heading, text in page.sections:
        digest.update(b"\x00h" + heading.encode() + b"\x00t" + text.encode())
    for image in page.images:
        digest.update(b"\x00i" + image.src.encode() + image.searchable_text().encode())
    return digest.hexdigest()


class IngestService:
    """Turns a URL into stored chunks and vectors."""

    def __init__(
        self,
        *,
        fetcher: Fetcher,
        store: Store,
        embedder: Embedder,
        cache: Cache,
        max_tokens: int,
    ) -> None:
        self._fetcher = fetcher
        self._store = store
        self._embedder = embedder
        self._cache = cache
        self._max_tokens = max_tokens

    async def ingest_page(self, url: str, collection_id: str) -> PageOutcome:
        existing = await self._store.find_document(collection_id, url)
        fetched = await self._fetcher.fetch(
            url,
            etag=existing.etag if existing else None,
            last_modified=existing.last_modified if existing else None,
        )
        if fetched.status_code == 304 and existing is not None:
            await self._store.mark_fetched(existing.id, fetched.etag, fetched.last_modified)
            return PageOutcome(PageOutcomeKind.UNCHANGED, existing, 0)
        page = await anyio.to_thread.run_sync(extract_page, fetched.body, fetched.final_url)
        if not page.sections and not page.images:
            raise FetchError("the page has no text that SKR could extract")
        digest = content_hash(page)
        if existing is not None and existing.content_hash == digest:
            await self._store.mark_fetched(existing.id, fetched.etag, fetched.last_modified)
            return PageOutcome(PageOutcomeKind.UNCHANGED, existing, 0)
        drafts = await anyio.to_thread.run_sync(
            split_into_chunks, page, self._embedder, self._max_tokens
        )
        texts = [chunk_embedding_text(page.title, d.heading_path, d.text) for d in drafts]
        vectors = await self._embedder.embed(texts)
        document = await self._store.write_page(
            PageWrite(
                collection_id=collection_id,
                url=url,
                final_url=fetched.final_url,
                title=page.title,
                content_hash=digest,
                etag=fetched.etag,
                last_modified=fetched.last_modified,
                chunks=drafts,
                model_id=self._embedder.model_id,
                vectors=vectors,
            )
        )
        await self._cache.bump_generation(collection_id)
        return PageOutcome(PageOutcomeKind.INDEXED, document, len(drafts))
