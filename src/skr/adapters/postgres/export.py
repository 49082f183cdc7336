"""Reads of the PostgreSQL store's pages as stored: documents with their chunks and vectors,
a batch at a time for export or one by id."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import numpy as np
import pgvector

from skr.adapters.postgres.database import Connection
from skr.adapters.postgres.rows import CHUNK_COLUMNS, Row, chunk_from_row, document_from_row
from skr.ports.store import StoredPage
from skr.ports.vectors import Vector

_BATCH = 64
_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
_DOCUMENTS = "SELECT * FROM documents WHERE collection_id = %s AND seq > %s ORDER BY seq LIMIT %s"
_DOCUMENT = "SELECT * FROM documents WHERE id = %s"
_CHUNKS_OF_DOCUMENTS = (
    f"SELECT {CHUNK_COLUMNS}, c.model_id, c.embedding FROM chunks c "  # noqa: S608 - constant
    "JOIN documents d ON d.id = c.document_id LEFT JOIN images i ON i.chunk_id = c.id "
    "WHERE c.document_id = ANY(%s) ORDER BY c.document_id, c.ordinal, c.seq"
)


async def stored_pages(
    connection: Callable[[], AbstractAsyncContextManager[Connection]],
    collection_id: str,
    dimensions: int,
) -> AsyncIterator[StoredPage]:
    """Every document of the collection, oldest first, a batch at a time; a connection
    per batch, so none is held while the caller works on what it got."""
    after = 0
    while True:
        async with connection() as conn:
            pages, after = await read_page_batch(conn, collection_id, after, _BATCH, dimensions)
        for page in pages:
            yield page
        if len(pages) < _BATCH:
            return


async def read_page_batch(
    conn: Connection, collection_id: str, after: int, limit: int, dimensions: int
) -> tuple[list[StoredPage], int]:
    """Up to ``limit`` documents after ``seq`` ``after``, read in one snapshot, and the
    ``seq`` to continue after."""
    async with conn.transaction():
        await conn.execute(_SNAPSHOT)
        cursor = await conn.execute(_DOCUMENTS, (collection_id, after, limit))
        documents = await cursor.fetchall()
        pages = await _pages_of(conn, documents, dimensions)
    next_after = int(documents[-1]["seq"]) if documents else after
    return pages, next_after


async def read_stored_page(
    conn: Connection, document_id: str, dimensions: int
) -> StoredPage | None:
    """One document with its chunks and vectors, read in one snapshot; ``None`` when
    there is no such document."""
    async with conn.transaction():
        await conn.execute(_SNAPSHOT)
        cursor = await conn.execute(_DOCUMENT, (document_id,))
        documents = await cursor.fetchall()
        pages = await _pages_of(conn, documents, dimensions)
    return pages[0] if pages else None


async def _pages_of(conn: Connection, documents: list[Row], dimensions: int) -> list[StoredPage]:
    """The stored pages of these document rows, in their order (inside the caller's
    snapshot)."""
    ids = [d["id"] for d in documents]
    chunk_rows: list[Row] = []
    if ids:
        cursor = await conn.execute(_CHUNKS_OF_DOCUMENTS, (ids,))
        chunk_rows = await cursor.fetchall()
    by_document: dict[str, list[Row]] = {i: [] for i in ids}
    for row in chunk_rows:
        by_document[row["document_id"]].append(row)
    return [_stored_page(d, by_document[d["id"]], dimensions) for d in documents]


def _stored_page(document: Row, rows: list[Row], dimensions: int) -> StoredPage:
    if rows:
        vectors = np.vstack([_array(r["embedding"]) for r in rows])
    else:
        vectors = np.empty((0, dimensions), dtype=np.float32)
    return StoredPage(
        document=document_from_row(document),
        chunks=[chunk_from_row(r) for r in rows],
        vectors=vectors,
        model_id=str(rows[0]["model_id"]) if rows else None,
    )


def _array(embedding: object) -> Vector:
    """A stored embedding as float32, whichever form pgvector's loader gave it."""
    if isinstance(embedding, pgvector.Vector):
        return np.asarray(embedding.to_numpy(), dtype=np.float32)
    return np.asarray(embedding, dtype=np.float32)
