"""The Store port: documents, chunks, images, collections and the two searches over them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from skr.domain.models import (
    Chunk,
    ChunkKind,
    Collection,
    Document,
    HybridQuery,
    PageWrite,
    ScoredId,
)
from skr.ports.vectors import Vector


@dataclass(frozen=True, slots=True)
class StoredPage:
    """One document as stored, for export and for re-ingest: its chunks in ordinal order,
    one vector per chunk (shape ``(len(chunks), dimensions)``), and the model that made
    the vectors (``None`` when the page has no chunks)."""

    document: Document
    chunks: list[Chunk]
    vectors: Vector
    model_id: str | None


class Store(Protocol):
    async def ensure_collection(self, name: str, tenant: str) -> Collection:
        """Return the named collection, creating it when it does not exist."""
        ...

    async def create_collection(self, name: str, tenant: str) -> Collection:
        """Create a collection; ``ConflictError`` when the name is taken."""
        ...

    async def get_collection(self, name: str, tenant: str) -> Collection:
        """``NotFoundError`` when there is no such collection for this tenant."""
        ...

    async def list_collections(self, tenant: str) -> list[Collection]: ...

    async def list_all_collections(self) -> list[Collection]:
        """Every collection of every tenant, ordered by tenant, then name."""
        ...

    async def find_document(self, collection_id: str, url: str) -> Document | None: ...

    async def stored_page(self, document_id: str) -> StoredPage | None:
        """One document as stored, with its chunks in ordinal order and their vectors
        (the same shape ``export_documents`` yields); ``None`` when there is no such
        document."""
        ...

    async def write_page(self, page: PageWrite) -> Document:
        """Store a page: its document row, chunks and vectors replace any earlier
        version of the same URL, all in one transaction."""
        ...

    async def mark_fetched(
        self, document_id: str, etag: str | None, last_modified: str | None
    ) -> None:
        """Record that an unchanged page was fetched again."""
        ...

    async def get_document(self, document_id: str, tenant: str) -> Document:
        """``NotFoundError`` for unknown ids and for another tenant's documents."""
        ...

    async def list_documents(
        self, collection_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Document], str | None]:
        """One page of documents, oldest first, and the cursor of the next page."""
        ...

    async def delete_document(self, document_id: str, tenant: str) -> None:
        """Delete a document with its chunks, images and vectors."""
        ...

    async def keyword_search(
        self, collection_id: str, query: str, k: int, kind: ChunkKind | None
    ) -> list[ScoredId]:
        """Best ``k`` chunks by full-text relevance, best first."""
        ...

    async def vector_search(
        self, collection_id: str, vector: Vector, k: int, kind: ChunkKind | None
    ) -> list[ScoredId]:
        """Best ``k`` chunks by cosine similarity to ``vector``, best first."""
        ...

    async def hybrid_search(self, collection_id: str, query: HybridQuery) -> list[ScoredId]:
        """Keyword and vector results fused by weighted reciprocal rank, best first,
        at most ``query.k``; each chunk at most once."""
        ...

    async def get_chunks(self, chunk_ids: Sequence[str]) -> list[Chunk]:
        """The chunks with these ids, in the order asked; unknown ids are left out."""
        ...

    async def hybrid_search_chunks(
        self, collection_id: str, query: HybridQuery
    ) -> list[tuple[Chunk, float]]:
        """:meth:`hybrid_search`'s results with their chunks (as :meth:`get_chunks` reads
        them) and scores, best first, read in one visit to the store where it can."""
        ...

    def export_documents(self, collection_id: str) -> AsyncIterator[StoredPage]:
        """Every document of the collection with its chunks and vectors, oldest first,
        read a batch at a time (never the whole collection at once)."""
        ...

    async def refresh_statistics(self) -> None:
        """Bring the query planner's statistics up to date after a bulk load, so that the
        first searches of a fresh collection are planned well."""
        ...

    async def ping(self) -> None:
        """A cheap check that the store answers; raises ``DependencyError`` if not."""
        ...
