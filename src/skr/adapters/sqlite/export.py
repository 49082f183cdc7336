"""Reads of the embedded store's pages as stored: documents with their chunks and vectors,
a batch at a time for export or one by id."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import AsyncIterator

import numpy as np

from skr.adapters.sqlite.database import SQLiteDatabase
from skr.adapters.sqlite.rows import SELECT_CHUNKS, chunk_from_row, document_from_row
from skr.ports.store import StoredPage

_BATCH = 64
_CHUNKS_OF_DOCUMENTS = (
    SELECT_CHUNKS + " WHERE c.document_id IN ({marks}) ORDER BY c.document_id, c.ordinal, c.seq"
)


async def stored_pages(
    database: SQLiteDatabase, collection_id: str, dimensions: int
) -> AsyncIterator[StoredPage]:
    """Every document of the collection, oldest first, read a batch at a time."""
    after = 0
    while True:
        pages, after = await database.read(
            functools.partial(
                read_page_batch,
                collection_id=collection_id,
                after=after,
                limit=_BATCH,
                dimensions=dimensions,
            )
        )
        for page in pages:
            yield page
        if len(pages) < _BATCH:
            return


def read_page_batch(
    conn: sqlite3.Connection, collection_id: str, after: int, limit: int, dimensions: int
) -> tuple[list[StoredPage], int]:
    """Up to ``limit`` documents after rowid ``after``, read in one snapshot, and the
    rowid to continue after."""
    conn.execute("BEGIN")
    try:
        documents = conn.execute(
            "SELECT rowid AS position, * FROM documents "
            "WHERE collection_id = ? AND rowid > ? ORDER BY rowid LIMIT ?",
            (collection_id, after, limit),
        ).fetchall()
        pages = _pages_of(conn, documents, dimensions)
    finally:
        conn.execute("COMMIT")
    next_after = int(documents[-1]["position"]) if documents else after
    return pages, next_after


def read_stored_page(
    conn: sqlite3.Connection, document_id: str, dimensions: int
) -> StoredPage | None:
    """One document with its chunks and vectors, read in one snapshot; ``None`` when
    there is no such document."""
    conn.execute("BEGIN")
    try:
        documents = conn.execute("SELECT * FROM documents WHERE id = ?", (document_id,)).fetchall()
        pages = _pages_of(conn, documents, dimensions)
    finally:
        conn.execute("COMMIT")
    return pages[0] if pages else None


def _pages_of(
    conn: sqlite3.Connection, documents: list[sqlite3.Row], dimensions: int
) -> list[StoredPage]:
    """The stored pages of these document rows, in their order (inside the caller's
    snapshot)."""
    ids = [d["id"] for d in documents]
    chunk_rows = (
        conn.execute(
            _CHUNKS_OF_DOCUMENTS.format(marks=",".join("?" * len(ids))),
            ids,
        ).fetchall()
        if ids
        else []
    )
    by_document: dict[str, list[sqlite3.Row]] = {i: [] for i in ids}
    for row in chunk_rows:
        by_document[row["document_id"]].append(row)
    return [_stored_page(d, by_document[d["id"]], dimensions) for d in documents]


def _stored_page(document: sqlite3.Row, rows: list[sqlite3.Row], dimensions: int) -> StoredPage:
    if rows:
        vectors = np.vstack([np.frombuffer(r["embedding"], dtype=np.float32) for r in rows])
    else:
        vectors = np.empty((0, dimensions), dtype=np.float32)
    return StoredPage(
        document=document_from_row(document),
        chunks=[chunk_from_row(r) for r in rows],
        vectors=vectors,
        model_id=str(rows[0]["model_id"]) if rows else None,
    )
