"""Ingest pages and texts: extract, split, embed and store them, skipping unchanged content."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

import anyio.to_thread
import numpy as np

from skr.domain.errors import FetchError, InvalidInputError
from skr.domain.models import ChunkDraft, Document, ExtractedPage, PageWrite
from skr.ports.cache import Cache
from skr.ports.embedder import Embedder
from skr.ports.fetcher import Fetcher
from skr.ports.store import Store
from skr.services.chunking import chunk_embedding_text, split_into_chunks
from skr.services.extraction import extract_page

logger = logging.getLogger(__name__)

_BLANK_LINE = re.compile(r"\n[ \t]*\n")
EMBED_BATCH_CHUNKS = 256
"""Chunks of several texts embedded in one call by :meth:`IngestService.ingest_texts`."""


class PageOutcomeKind(StrEnum):
    INDEXED = "indexed"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class PageOutcome:
    kind: PageOutcomeKind
    document: Document | None
    chunks: int


@dataclass(frozen=True, slots=True)
class TextDocument:
    """A document given as text, not fetched: ``source_id`` becomes its URL."""

    source_id: str
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class _Source:
    """Where a page came from, as stored beside it."""

    url: str
    final_url: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class _Planned:
    """A changed page, split and ready to embed."""

    source: _Source
    page: ExtractedPage
    digest: str
    drafts: list[ChunkDraft]
    texts: list[str]


def content_hash(page: ExtractedPage) -> str:
    """A hash of what SKR keeps of a page, so that markup-only changes cost nothing."""
    digest = hashlib.sha256()
    digest.update(page.title.encode())
    for heading, text in page.sections:
        digest.update(b"\x00h" + heading.encode() + b"\x00t" + text.encode())
    for image in page.images:
        digest.update(b"\x00i" + image.src.encode() + image.searchable_text().encode())
    return digest.hexdigest()


def text_page(title: str, text: str) -> ExtractedPage:
    """A text as if extracted from a page: one section, its paragraphs split on blank lines."""
    paragraphs = (p.strip() for p in _BLANK_LINE.split(text.replace("\r\n", "\n")))
    body = "\n\n".join(p for p in paragraphs if p)
    if not body:
        raise InvalidInputError("the document has no text")
    return ExtractedPage(
        title=" ".join(title.split()), text=body, sections=[("", body)], images=[], links=[]
    )


class IngestService:
    """Turns a URL, or a text, into stored chunks and vectors."""

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
        source = _Source(url, fetched.final_url, fetched.etag, fetched.last_modified)
        planned = await self._plan(collection_id, source, page, existing)
        if isinstance(planned, PageOutcome):
            return planned
        [outcome] = await self._embed_and_write(collection_id, [planned])
        return outcome

    async def ingest_text(
        self, *, source_id: str, title: str, text: str, collection_id: str
    ) -> PageOutcome:
        """Index a text given directly (no fetch) under the URL ``source_id``, exactly as
        a page with that title and text would be; unchanged text stores nothing new."""
        [outcome] = await self.ingest_texts(
            [TextDocument(source_id, title, text)], collection_id=collection_id
        )
        return outcome

    async def ingest_texts(
        self,
        documents: Iterable[TextDocument],
        *,
        collection_id: str,
        batch_chunks: int = EMBED_BATCH_CHUNKS,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[PageOutcome]:
        """Index many texts as :meth:`ingest_text` does, one outcome each in input order.

        Their chunks are embedded together, one call per ``batch_chunks`` or so, while each
        document is still written on its own; ``on_progress`` hears how many are done. Every
        document is checked first: one without text stores nothing (``InvalidInputError``).
        """
        pages = [(d.source_id, text_page(d.title, d.text)) for d in documents]
        outcomes: list[PageOutcome | None] = [None] * len(pages)
        pending: list[tuple[int, _Planned]] = []

        async def flush() -> None:
            written = await self._embed_and_write(collection_id, [p for _, p in pending])
            for (index, _), outcome in zip(pending, written, strict=True):
                outcomes[index] = outcome
            pending.clear()

        for index, (source_id, page) in enumerate(pages):
            existing = await self._store.find_document(collection_id, source_id)
            planned = await self._plan(collection_id, _Source(source_id, source_id), page, existing)
            if isinstance(planned, PageOutcome):
                outcomes[index] = planned
            else:
                pending.append((index, planned))
            if sum(len(p.drafts) for _, p in pending) >= batch_chunks or index == len(pages) - 1:
                await flush()
            if on_progress is not None and not pending:
                on_progress(index + 1)
        return [outcome for outcome in outcomes if outcome is not None]

    async def _plan(
        self, collection_id: str, source: _Source, page: ExtractedPage, existing: Document | None
    ) -> _Planned | PageOutcome:
        """Unchanged content is only marked as seen again; changed content is split."""
        digest = content_hash(page)
        if existing is not None and existing.content_hash == digest:
            await self._store.mark_fetched(existing.id, source.etag, source.last_modified)
            return PageOutcome(PageOutcomeKind.UNCHANGED, existing, 0)
        drafts = await anyio.to_thread.run_sync(
            split_into_chunks, page, self._embedder, self._max_tokens
        )
        texts = [chunk_embedding_text(page.title, d.heading_path, d.text) for d in drafts]
        return _Planned(source, page, digest, drafts, texts)

    async def _embed_and_write(
        self, collection_id: str, planned: list[_Planned]
    ) -> list[PageOutcome]:
        """One embedding call for the chunks of all these pages, then one write per page."""
        if not planned:
            return []
        vectors = await self._embedder.embed([text for p in planned for text in p.texts])
        offsets = np.cumsum([0, *(len(p.texts) for p in planned)])
        outcomes: list[PageOutcome] = []
        for p, start, stop in zip(planned, offsets[:-1], offsets[1:], strict=True):
            document = await self._store.write_page(
                PageWrite(
                    collection_id=collection_id,
                    url=p.source.url,
                    final_url=p.source.final_url,
                    title=p.page.title,
                    content_hash=p.digest,
                    etag=p.source.etag,
                    last_modified=p.source.last_modified,
                    chunks=p.drafts,
                    model_id=self._embedder.model_id,
                    vectors=vectors[start:stop],
                )
            )
            outcomes.append(PageOutcome(PageOutcomeKind.INDEXED, document, len(p.drafts)))
        await self._cache.bump_generation(collection_id)
        return outcomes
