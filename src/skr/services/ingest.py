"""Ingest pages and texts: extract, split, embed and store them, skipping unchanged content."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

import anyio
import anyio.to_process
import anyio.to_thread
import numpy as np
from anyio import BrokenWorkerProcess

from skr.domain.errors import FetchError, InvalidInputError
from skr.domain.models import ChunkDraft, Document, ExtractedPage, FetchedPage, PageWrite
from skr.domain.vectors import Vector
from skr.ports.cache import Cache
from skr.ports.embedder import Embedder
from skr.ports.fetcher import HTML_MEDIA_TYPES, Fetcher
from skr.ports.image_reader import ImageReader
from skr.ports.store import Store
from skr.runtime.thread_priority import lower_this_thread
from skr.services.chunking import chunk_embedding_text, split_into_chunks
from skr.services.extraction.content_sniffing import looks_like_text
from skr.services.extraction.html import extract_page
from skr.services.extraction.pdf import extract_pdf
from skr.services.page_images import ImageOptions as ImageOptions  # wiring imports it here
from skr.services.page_images import PageImageReader

logger = logging.getLogger(__name__)

_BLANK_LINE = re.compile(r"\n[ \t]*\n")
EMBED_BATCH_CHUNKS = 256
"""Chunks of several texts embedded in one call by :meth:`IngestService.ingest_texts`."""
PDF_MEDIA_TYPE = "application/pdf"
PAGE_MEDIA_TYPES = HTML_MEDIA_TYPES | {PDF_MEDIA_TYPE}


class PageOutcomeKind(StrEnum):
    INDEXED = "indexed"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class PageOutcome:
    kind: PageOutcomeKind
    document: Document | None
    chunks: int  # chunks stored
    embedded: int = 0  # of which were embedded now (the others kept their stored vectors)


@dataclass(frozen=True, slots=True)
class TextDocument:
    """A document given as text, not fetched: ``source_id`` becomes its URL."""

    source_id: str
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class PageSource:
    """Where a page came from, as stored beside it."""

    url: str
    final_url: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class FetchedContent:
    """A page fetched and extracted but not stored yet (see :meth:`IngestService.fetch_page`).
    ``existing`` is the stored version of the same URL, if any."""

    source: PageSource
    page: ExtractedPage
    existing: Document | None


@dataclass(frozen=True, slots=True)
class _Planned:
    """A changed page, split and ready to embed."""

    source: PageSource
    page: ExtractedPage
    digest: str
    drafts: list[ChunkDraft]
    texts: list[str]
    existing: Document | None


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


_process_lowered_by = 0  # in an extraction process: how far its priority was lowered


def _extract_in_process(fetched: FetchedPage, niceness: int) -> ExtractedPage:
    """:func:`_extract` in an extraction process, which first yields the CPU to requests
    (once: a lowered priority cannot be raised again without privileges)."""
    global _process_lowered_by
    if niceness > _process_lowered_by:
        lower_this_thread(niceness - _process_lowered_by)  # the process's one working thread
        _process_lowered_by = niceness
    return _extract(fetched)


def _extract(fetched: FetchedPage) -> ExtractedPage:
    """The page's text by its media type: a PDF page by page, anything else as HTML."""
    media_type = fetched.content_type.partition(";")[0].strip().lower()
    if media_type == PDF_MEDIA_TYPE:
        return extract_pdf(fetched.body, fetched.final_url)
    if not looks_like_text(fetched.body):
        raise FetchError(f"the body is binary data, not the {media_type or 'HTML'} it claims")
    return extract_page(fetched.body, fetched.final_url)


def _stack(vectors: list[Vector]) -> Vector:
    if not vectors:
        return np.empty((0, 0), dtype=np.float32)
    return np.stack(vectors).astype(np.float32, copy=False)


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
        image_reader: ImageReader | None = None,
        image_options: ImageOptions | None = None,
        extraction_processes: int = 0,
        extraction_niceness: int = 0,
    ) -> None:
        """``extraction_processes``: how many worker processes may extract pages at once;
        0 extracts on a thread of this process. In a process, extraction (pure Python,
        holding the GIL through a big page) cannot stall this process's event loop
        (docs/benchmarks/history.md, "Runs F–J", runs P–S), and a page that crashes the
        parser costs that page, not the process; there it runs ``extraction_niceness``
        lower in CPU priority than requests."""
        self._fetcher = fetcher
        self._store = store
        self._embedder = embedder
        self._cache = cache
        self._max_tokens = max_tokens
        self._images = (
            None
            if image_reader is None
            else PageImageReader(
                fetcher=fetcher, reader=image_reader, options=image_options or ImageOptions()
            )
        )
        self._extraction_niceness = extraction_niceness
        self._extraction_limiter = (
            anyio.CapacityLimiter(extraction_processes) if extraction_processes else None
        )

    async def ingest_page(self, url: str, collection_id: str) -> PageOutcome:
        """Fetch, extract and index one page (HTML or PDF)."""
        fetched = await self.fetch_page(url, collection_id)
        if isinstance(fetched, PageOutcome):
            return fetched
        return await self.index_page(collection_id, fetched)

    async def fetch_page(self, url: str, collection_id: str) -> FetchedContent | PageOutcome:
        """Fetch and extract ``url``, asking the server whether it changed since the stored
        version; a page the server says is unchanged (304) is only marked as seen and comes
        back as an ``UNCHANGED`` outcome. ``FetchError`` when there is nothing to index."""
        existing = await self._store.find_document(collection_id, url)
        fetched = await self._fetcher.fetch(
            url,
            etag=existing.etag if existing else None,
            last_modified=existing.last_modified if existing else None,
            accept=PAGE_MEDIA_TYPES,
        )
        if fetched.status_code == 304 and existing is not None:
            await self._store.mark_fetched(existing.id, fetched.etag, fetched.last_modified)
            return PageOutcome(PageOutcomeKind.UNCHANGED, existing, 0)
        page = await self._extract_off_the_loop(fetched)
        if not page.sections and not page.images:
            raise FetchError("the page has no text that SKR could extract")
        source = PageSource(url, fetched.final_url, fetched.etag, fetched.last_modified)
        return FetchedContent(source, page, existing)

    async def _extract_off_the_loop(self, fetched: FetchedPage) -> ExtractedPage:
        if self._extraction_limiter is None:
            return await anyio.to_thread.run_sync(_extract, fetched)
        try:
            return await anyio.to_process.run_sync(
                _extract_in_process,
                fetched,
                self._extraction_niceness,
                cancellable=True,
                limiter=self._extraction_limiter,
            )
        except BrokenWorkerProcess as exc:
            raise FetchError("extracting the page crashed the process that read it") from exc

    async def index_page(self, collection_id: str, content: FetchedContent) -> PageOutcome:
        """Store a fetched page: unchanged content is only marked as seen; changed content
        has its images read, is split, and only chunks whose text is new are embedded."""
        planned = await self._plan(collection_id, content.source, content.page, content.existing)
        if isinstance(planned, PageOutcome):
            return planned
        [outcome] = await self._embed_and_write(collection_id, [planned])
        return outcome

    async def remove_document(self, document: Document, tenant: str) -> None:
        """Delete a stored page (its chunks, images and vectors go too)."""
        await self._store.delete_document(document.id, tenant)
        await self._cache.bump_generation(document.collection_id)

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
            source = PageSource(source_id, source_id)
            planned = await self._plan(collection_id, source, page, existing)
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
        self, collection_id: str, source: PageSource, page: ExtractedPage, existing: Document | None
    ) -> _Planned | PageOutcome:
        """Unchanged content is only marked as seen again; changed content is split.

        The hash is taken before images are read, so an unchanged page costs no image
        fetch and no OCR."""
        digest = content_hash(page)
        if existing is not None and existing.content_hash == digest:
            await self._store.mark_fetched(existing.id, source.etag, source.last_modified)
            return PageOutcome(PageOutcomeKind.UNCHANGED, existing, 0)
        if self._images is not None:
            page = await self._images.read_images(page)
        drafts = await anyio.to_thread.run_sync(
            split_into_chunks, page, self._embedder, self._max_tokens
        )
        texts = [chunk_embedding_text(page.title, d.heading_path, d.text) for d in drafts]
        return _Planned(source, page, digest, drafts, texts, existing)

    async def _reusable_vectors(self, planned: _Planned) -> dict[str, Vector]:
        """Vectors of the stored version's chunks, by the exact text that was embedded, when
        they came from the same model."""
        if planned.existing is None:
            return {}
        stored = await self._store.stored_page(planned.existing.id)
        if stored is None or stored.model_id != self._embedder.model_id:
            return {}
        title = stored.document.title
        return {
            chunk_embedding_text(title, chunk.heading_path, chunk.text): vector
            for chunk, vector in zip(stored.chunks, stored.vectors, strict=True)
        }

    async def _embed_and_write(
        self, collection_id: str, planned: list[_Planned]
    ) -> list[PageOutcome]:
        """One embedding call for the new chunk texts of all these pages (a chunk whose text
        is unchanged keeps its stored vector), then one write per page."""
        if not planned:
            return []
        known = [await self._reusable_vectors(p) for p in planned]
        missing = list(
            dict.fromkeys(
                t for p, k in zip(planned, known, strict=True) for t in p.texts if t not in k
            )
        )
        fresh: dict[str, Vector] = {}
        if missing:
            fresh = dict(zip(missing, await self._embedder.embed(missing), strict=True))
        outcomes: list[PageOutcome] = []
        for p, reuse in zip(planned, known, strict=True):
            vectors = _stack([reuse[t] if t in reuse else fresh[t] for t in p.texts])
            embedded = sum(1 for t in p.texts if t not in reuse)
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
                    vectors=vectors,
                )
            )
            outcomes.append(PageOutcome(PageOutcomeKind.INDEXED, document, len(p.drafts), embedded))
        await self._cache.bump_generation(collection_id)
        return outcomes
