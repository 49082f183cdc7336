"""The scale-out Store: PostgreSQL with pgvector (HNSW) for vectors and tsvector for keywords."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from skr.adapters.postgres.database import Connection, PostgresDatabase
from skr.adapters.postgres.export import read_stored_page, stored_pages
from skr.adapters.postgres.rows import (
    Row,
    chunk_from_row,
    collection_from_row,
    document_from_row,
    page_rows,
    storable,
    storable_or_none,
)
from skr.adapters.postgres.search_queries import (
    CHUNKS_BY_ID,
    HYBRID,
    KEYWORD_CANDIDATES,
    VECTOR_CANDIDATES,
    VECTOR_RESORTED,
    hnsw_fetch,
    tsquery_words,
    with_kind,
)
from skr.domain.errors import (
    ConflictError,
    DependencyError,
    InvalidInputError,
    NotFoundError,
    SKRError,
)
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
from skr.ports.store import StoredPage
from skr.ports.vectors import Vector

_UPSERT_DOCUMENT = """
INSERT INTO documents (id, collection_id, url, final_url, title, content_hash, etag,
    last_modified, fetched_at, status, chunk_count, image_count)
VALUES (%(id)s, %(collection)s, %(url)s, %(final_url)s, %(title)s, %(hash)s, %(etag)s,
    %(last_modified)s, now(), 'indexed', %(chunks)s, %(images)s)
ON CONFLICT (collection_id, url) DO UPDATE SET
    final_url = excluded.final_url, title = excluded.title,
    content_hash = excluded.content_hash, etag = excluded.etag,
    last_modified = excluded.last_modified, fetched_at = excluded.fetched_at,
    status = excluded.status, chunk_count = excluded.chunk_count,
    image_count = excluded.image_count
RETURNING *
"""
_INSERT_CHUNK = (
    "INSERT INTO chunks (id, document_id, collection_id, ordinal, kind, title, heading_path, "
    "text, token_count, model_id, embedding) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_INSERT_IMAGE = (
    "INSERT INTO images (chunk_id, src, alt, title, caption, surrounding_text, ocr_text) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
_TENANT_DOCUMENT = (
    "SELECT d.* FROM documents d JOIN collections k ON k.id = d.collection_id "
    "WHERE d.id = %s AND k.tenant = %s"
)


class PostgresStore:
    """Implements the Store port on PostgreSQL (see ``postgres_migrations`` for the schema)."""

    def __init__(self, database: PostgresDatabase, *, model_id: str, dimensions: int) -> None:
        self._db = database
        self._model_id = model_id
        self._dimensions = dimensions

    def _connection(self, *, transaction: bool = False) -> AbstractAsyncContextManager[Connection]:
        """A pooled connection (in one transaction when asked), driver errors translated."""
        return self._db.translated(_store_error, transaction=transaction)

    async def _fetch(self, query: Any, params: Any = None) -> list[Row]:
        async with self._connection() as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchall()

    async def _fetch_one(self, query: Any, params: Any = None) -> Row | None:
        rows = await self._fetch(query, params)
        return rows[0] if rows else None

    async def refresh_statistics(self) -> None:
        # what autovacuum does within a minute or so; it may be off, or not yet due
        async with self._connection() as conn:
            await conn.execute("ANALYZE chunks, documents")

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    # collections ----------------------------------------------------------

    async def ensure_collection(self, name: str, tenant: str) -> Collection:
        for _ in range(3):  # a concurrent create can hide from both statements once
            row = await self._select_collection(name, tenant)
            if row is None:
                row = await self._insert_collection(name, tenant)
            if row is not None:
                return collection_from_row(row)
        raise DependencyError(f"the collection {name!r} could neither be found nor created")

    async def create_collection(self, name: str, tenant: str) -> Collection:
        row = await self._insert_collection(name, tenant)
        if row is None:
            raise ConflictError(f"a collection named {name!r} already exists")
        return collection_from_row(row)

    async def _insert_collection(self, name: str, tenant: str) -> Row | None:
        return await self._fetch_one(
            "INSERT INTO collections (id, name, tenant) VALUES (%s, %s, %s) "
            "ON CONFLICT (tenant, name) DO NOTHING RETURNING *",
            (uuid.uuid4().hex, storable(name), storable(tenant)),
        )

    async def _select_collection(self, name: str, tenant: str) -> Row | None:
        return await self._fetch_one(
            "SELECT * FROM collections WHERE tenant = %s AND name = %s",
            (storable(tenant), storable(name)),
        )

    async def get_collection(self, name: str, tenant: str) -> Collection:
        row = await self._select_collection(name, tenant)
        if row is None:
            raise NotFoundError(f"there is no collection named {name!r}")
        return collection_from_row(row)

    async def list_collections(self, tenant: str) -> list[Collection]:
        rows = await self._fetch(
            "SELECT * FROM collections WHERE tenant = %s ORDER BY created_at, name",
            (storable(tenant),),
        )
        return [collection_from_row(r) for r in rows]

    async def list_all_collections(self) -> list[Collection]:
        rows = await self._fetch("SELECT * FROM collections ORDER BY tenant, name")
        return [collection_from_row(r) for r in rows]

    def export_documents(self, collection_id: str) -> AsyncIterator[StoredPage]:
        return stored_pages(self._connection, collection_id, self._dimensions)

    # documents -------------------------------------------------------------

    async def find_document(self, collection_id: str, url: str) -> Document | None:
        row = await self._fetch_one(
            "SELECT * FROM documents WHERE collection_id = %s AND url = %s",
            (collection_id, storable(url)),
        )
        return None if row is None else document_from_row(row)

    async def stored_page(self, document_id: str) -> StoredPage | None:
        async with self._connection() as conn:
            return await read_stored_page(conn, document_id, self._dimensions)

    async def write_page(self, page: PageWrite) -> Document:
        vectors = self._page_vectors(page)
        images = sum(1 for c in page.chunks if c.kind is ChunkKind.IMAGE)
        params = {
            "id": uuid.uuid4().hex, "collection": page.collection_id, "url": storable(page.url),
            "final_url": storable(page.final_url), "title": storable(page.title),
            "hash": page.content_hash, "etag": storable_or_none(page.etag),
            "last_modified": storable_or_none(page.last_modified),
            "chunks": len(page.chunks) - images, "images": images,
        }  # fmt: skip
        async with self._connection(transaction=True) as conn:
            cursor = await conn.execute(_UPSERT_DOCUMENT, params)
            row = await cursor.fetchone()
            if row is None:  # pragma: no cover - an upsert with RETURNING returns its row
                raise DependencyError("the document row was not written")
            await conn.execute("DELETE FROM chunks WHERE document_id = %s", (row["id"],))
            chunk_rows, image_rows = page_rows(page, row["id"], vectors)
            async with conn.cursor() as insert:
                if chunk_rows:
                    await insert.executemany(_INSERT_CHUNK, chunk_rows)
                if image_rows:
                    await insert.executemany(_INSERT_IMAGE, image_rows)
        return document_from_row(row)

    def _page_vectors(self, page: PageWrite) -> Vector:
        if page.vectors.shape[0] != len(page.chunks):
            raise InvalidInputError("every chunk needs exactly one vector")
        if not page.chunks:
            return np.empty((0, self._dimensions), dtype=np.float32)
        vectors = np.asarray(page.vectors, dtype=np.float32).reshape(len(page.chunks), -1)
        if vectors.shape[1] != self._dimensions:
            raise InvalidInputError(
                f"vectors have {vectors.shape[1]} dimensions, this store keeps {self._dimensions}"
            )
        if not np.isfinite(vectors).all():
            raise InvalidInputError("vectors must hold finite numbers only")
        return vectors

    async def mark_fetched(
        self, document_id: str, etag: str | None, last_modified: str | None
    ) -> None:
        await self._fetch(
            "UPDATE documents SET fetched_at = now(), etag = coalesce(%s, etag), "
            "last_modified = coalesce(%s, last_modified) WHERE id = %s RETURNING id",
            (storable_or_none(etag), storable_or_none(last_modified), document_id),
        )

    async def get_document(self, document_id: str, tenant: str) -> Document:
        row = await self._fetch_one(_TENANT_DOCUMENT, (document_id, storable(tenant)))
        if row is None:
            raise NotFoundError(f"there is no document with id {document_id!r}")
        return document_from_row(row)

    async def list_documents(
        self, collection_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Document], str | None]:
        after = decode_cursor(cursor)
        rows = await self._fetch(
            "SELECT * FROM documents WHERE collection_id = %s AND seq > %s ORDER BY seq LIMIT %s",
            (collection_id, after, max(limit, 0) + 1),
        )
        page = rows[:limit]
        next_cursor = str(page[-1]["seq"]) if page and len(rows) > limit else None
        return [document_from_row(r) for r in page], next_cursor

    async def delete_document(self, document_id: str, tenant: str) -> None:
        # chunks go by ON DELETE CASCADE, and their images with them
        row = await self._fetch_one(
            "DELETE FROM documents d USING collections k "
            "WHERE d.id = %s AND k.id = d.collection_id AND k.tenant = %s RETURNING d.id",
            (document_id, storable(tenant)),
        )
        if row is None:
            raise NotFoundError(f"there is no document with id {document_id!r}")

    # search ------------------------------------------------------------------

    async def keyword_search(
        self, collection_id: str, query: str, k: int, kind: ChunkKind | None
    ) -> list[ScoredId]:
        words = tsquery_words(query)
        if not words or k <= 0:
            return []
        params = self._search_params(collection_id, kind, candidates=k, words=words)
        rows = await self._fetch(with_kind(KEYWORD_CANDIDATES, kind), params)
        return [ScoredId(r["id"], float(r["rank"])) for r in rows]

    async def vector_search(
        self, collection_id: str, vector: Vector, k: int, kind: ChunkKind | None
    ) -> list[ScoredId]:
        if k <= 0:
            return []
        params = self._search_params(
            collection_id, kind, candidates=k, vector=self._query_vector(vector)
        )
        query = sql.SQL(VECTOR_RESORTED).format(nearest=with_kind(VECTOR_CANDIDATES, kind))
        async with self._connection() as conn:
            rows = await hnsw_fetch(conn, query, params, k)
        return [ScoredId(r["id"], 1.0 - float(r["distance"])) for r in rows]

    async def hybrid_search(self, collection_id: str, query: HybridQuery) -> list[ScoredId]:
        if query.k <= 0 or query.candidates <= 0:
            return []
        statement, params = self._hybrid_statement(collection_id, query)
        async with self._connection() as conn:
            rows = await hnsw_fetch(conn, statement, params, query.candidates)
        return [ScoredId(r["id"], float(r["score"])) for r in rows]

    async def hybrid_search_chunks(
        self, collection_id: str, query: HybridQuery
    ) -> list[tuple[Chunk, float]]:
        """The ranking, then its chunks, on one pooled connection: one wait for the pool,
        not two (still two round trips: the chunks' ids come from the ranking)."""
        if query.k <= 0 or query.candidates <= 0:
            return []
        statement, params = self._hybrid_statement(collection_id, query)
        async with self._connection() as conn:
            ranked = await hnsw_fetch(conn, statement, params, query.candidates)
            ids = [r["id"] for r in ranked]
            if not ids:
                return []
            cursor = await conn.execute(CHUNKS_BY_ID, (ids,))
            by_id = {r["id"]: chunk_from_row(r) for r in await cursor.fetchall()}
        return [(by_id[r["id"]], float(r["score"])) for r in ranked if r["id"] in by_id]

    def _hybrid_statement(
        self, collection_id: str, query: HybridQuery
    ) -> tuple[sql.Composed, dict[str, Any]]:
        keyword_weight, vector_weight = query.weights
        params = self._search_params(
            collection_id,
            query.kind,
            candidates=query.candidates,
            words=tsquery_words(query.text),
            vector=self._query_vector(query.vector),
            keyword_weight=float(keyword_weight),
            vector_weight=float(vector_weight),
            rrf_k=query.rrf_k,
            k=query.k,
        )
        statement = sql.SQL(HYBRID[query.fusion]).format(
            best=with_kind(KEYWORD_CANDIDATES, query.kind),
            nearest=with_kind(VECTOR_CANDIDATES, query.kind),
        )
        return statement, params

    def _search_params(
        self, collection_id: str, kind: ChunkKind | None, **values: Any
    ) -> dict[str, Any]:
        return {
            "collection": collection_id,
            "kind": None if kind is None else kind.value,
            "model": self._model_id,
            **values,
        }

    def _query_vector(self, vector: Vector) -> Vector:
        flat = np.asarray(vector, dtype=np.float32).reshape(-1)
        if flat.shape[0] != self._dimensions:
            raise InvalidInputError(
                f"the query vector has {flat.shape[0]} dimensions, not {self._dimensions}"
            )
        if not np.isfinite(flat).all():
            raise InvalidInputError("the query vector must hold finite numbers only")
        return flat

    async def get_chunks(self, chunk_ids: Sequence[str]) -> list[Chunk]:
        if not chunk_ids:
            return []
        rows = await self._fetch(CHUNKS_BY_ID, (list(chunk_ids),))
        by_id = {r["id"]: chunk_from_row(r) for r in rows}
        return [by_id[i] for i in chunk_ids if i in by_id]


def _store_error(exc: psycopg.Error) -> SKRError:
    message = exc.diag.message_primary or type(exc).__name__
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return ConflictError(f"the write clashes with stored data: {message}")
    return DependencyError(f"the PostgreSQL store failed: {message}")
