"""An in-memory Store for unit tests: naive IDF keyword scoring, exact cosine search."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from skr.domain.errors import ConflictError, InvalidInputError, NotFoundError
from skr.domain.models import (
    Chunk,
    ChunkKind,
    Collection,
    Document,
    HybridQuery,
    PageWrite,
    ScoredId,
)
from skr.domain.paging import decode_cursor
from skr.domain.query_terms import keyword_terms
from skr.domain.ranking import fuse
from skr.domain.vectors import Vector
from skr.ports.store import StoredPage

_WORD = re.compile(r"\w+")


class InMemoryStore:
    def __init__(self) -> None:
        self.collections: dict[str, Collection] = {}
        self.documents: dict[str, Document] = {}
        self.chunks: dict[str, tuple[Chunk, Vector]] = {}
        self.order: list[str] = []
        self.page_models: dict[str, str] = {}
        self.statistics_refreshed = 0

    async def ensure_collection(self, name: str, tenant: str) -> Collection:
        for c in self.collections.values():
            if c.name == name and c.tenant == tenant:
                return c
        return await self.create_collection(name, tenant)

    async def create_collection(self, name: str, tenant: str) -> Collection:
        if any(c.name == name and c.tenant == tenant for c in self.collections.values()):
            raise ConflictError(f"a collection named {name!r} already exists")
        collection = Collection(uuid.uuid4().hex, name, tenant, datetime.now(UTC))
        self.collections[collection.id] = collection
        return collection

    async def get_collection(self, name: str, tenant: str) -> Collection:
        for c in self.collections.values():
            if c.name == name and c.tenant == tenant:
                return c
        raise NotFoundError(f"there is no collection named {name!r}")

    async def list_collections(self, tenant: str) -> list[Collection]:
        return [c for c in self.collections.values() if c.tenant == tenant]

    async def list_all_collections(self) -> list[Collection]:
        return sorted(self.collections.values(), key=lambda c: (c.tenant, c.name))

    async def export_documents(self, collection_id: str) -> AsyncIterator[StoredPage]:
        for document_id in list(self.order):
            document = self.documents.get(document_id)
            if document is None or document.collection_id != collection_id:
                continue
            yield self._stored_page(document)

    def _stored_page(self, document: Document) -> StoredPage:
        pairs = sorted(
            (v for v in self.chunks.values() if v[0].document_id == document.id),
            key=lambda pair: pair[0].ordinal,
        )
        vectors = np.vstack([v for _, v in pairs]) if pairs else np.empty((0, 0), np.float32)
        model_id = self.page_models.get(document.id) if pairs else None
        return StoredPage(document, [c for c, _ in pairs], vectors, model_id)

    async def find_document(self, collection_id: str, url: str) -> Document | None:
        for d in self.documents.values():
            if d.collection_id == collection_id and d.url == url:
                return d
        return None

    async def stored_page(self, document_id: str) -> StoredPage | None:
        document = self.documents.get(document_id)
        return None if document is None else self._stored_page(document)

    async def write_page(self, page: PageWrite) -> Document:
        if page.vectors.shape[0] != len(page.chunks):
            raise InvalidInputError("every chunk needs exactly one vector")
        existing = await self.find_document(page.collection_id, page.url)
        document_id = existing.id if existing else uuid.uuid4().hex
        images = sum(1 for c in page.chunks if c.kind is ChunkKind.IMAGE)
        document = Document(
            document_id, page.collection_id, page.url, page.final_url, page.title,
            page.content_hash, page.etag, page.last_modified, datetime.now(UTC), "indexed",
            len(page.chunks) - images, images,
        )  # fmt: skip
        self.chunks = {k: v for k, v in self.chunks.items() if v[0].document_id != document_id}
        for draft, vector in zip(page.chunks, page.vectors, strict=True):
            chunk = Chunk(
                uuid.uuid4().hex, document_id, page.collection_id, draft.ordinal, draft.kind,
                draft.text, draft.heading_path, draft.token_count, page.url, page.title,
                draft.image,
            )  # fmt: skip
            self.chunks[chunk.id] = (chunk, np.asarray(vector, dtype=np.float32))
        if existing is None:
            self.order.append(document_id)
        self.documents[document_id] = document
        self.page_models[document_id] = page.model_id
        return document

    async def mark_fetched(
        self, document_id: str, etag: str | None, last_modified: str | None
    ) -> None:
        document = self.documents[document_id]
        self.documents[document_id] = replace(
            document,
            fetched_at=datetime.now(UTC),
            etag=etag or document.etag,
            last_modified=last_modified or document.last_modified,
        )

    async def get_document(self, document_id: str, tenant: str) -> Document:
        document = self.documents.get(document_id)
        if document is None or self.collections[document.collection_id].tenant != tenant:
            raise NotFoundError(f"there is no document with id {document_id!r}")
        return document

    async def list_documents(
        self, collection_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Document], str | None]:
        start = decode_cursor(cursor)
        ids = [i for i in self.order if self.documents[i].collection_id == collection_id]
        page = ids[start : start + limit]
        more = start + limit < len(ids)
        return [self.documents[i] for i in page], str(start + limit) if more else None

    async def delete_document(self, document_id: str, tenant: str) -> None:
        await self.get_document(document_id, tenant)
        del self.documents[document_id]
        self.order.remove(document_id)
        self.chunks = {k: v for k, v in self.chunks.items() if v[0].document_id != document_id}

    def _in(self, collection_id: str, kind: ChunkKind | None) -> list[tuple[Chunk, Vector]]:
        return [
            (c, v)
            for c, v in self.chunks.values()
            if c.collection_id == collection_id and (kind is None or c.kind is kind)
        ]

    async def keyword_search(
        self, collection_id: str, query: str, k: int, kind: ChunkKind | None
    ) -> list[ScoredId]:
        wanted = set(keyword_terms(query))
        words_of = {
            chunk.id: [w.lower() for w in _WORD.findall(f"{chunk.heading_path} {chunk.text}")]
            for chunk, _ in self._in(collection_id, None)
        }
        # each matched word counts by its rarity in the collection, as BM25's IDF does
        df = {w: sum(1 for words in words_of.values() if w in words) for w in wanted}
        scored = []
        for chunk, _ in self._in(collection_id, kind):
            words = words_of[chunk.id]
            score = sum(math.log(1 + len(words_of) / df[w]) for w in words if w in wanted)
            if score:
                scored.append(ScoredId(chunk.id, float(score)))
        return sorted(scored, key=lambda s: s.score, reverse=True)[:k]

    async def vector_search(
        self, collection_id: str, vector: Vector, k: int, kind: ChunkKind | None
    ) -> list[ScoredId]:
        scored = [
            ScoredId(c.id, float(np.dot(v, vector))) for c, v in self._in(collection_id, kind)
        ]
        return sorted(scored, key=lambda s: s.score, reverse=True)[:k]

    async def hybrid_search(self, collection_id: str, query: HybridQuery) -> list[ScoredId]:
        keyword = await self.keyword_search(collection_id, query.text, query.candidates, query.kind)
        vector = await self.vector_search(collection_id, query.vector, query.candidates, query.kind)
        return fuse(query, keyword, vector)

    async def get_chunks(self, chunk_ids: Sequence[str]) -> list[Chunk]:
        return [self.chunks[i][0] for i in chunk_ids if i in self.chunks]

    async def hybrid_search_chunks(
        self, collection_id: str, query: HybridQuery
    ) -> list[tuple[Chunk, float]]:
        ranked = await self.hybrid_search(collection_id, query)
        return [(self.chunks[s.chunk_id][0], s.score) for s in ranked if s.chunk_id in self.chunks]

    async def refresh_statistics(self) -> None:
        self.statistics_refreshed += 1

    async def ping(self) -> None:
        return None
