"""Writes of the embedded store that touch a page's rows: one page in, its chunks replaced."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from skr.adapters.sqlite.rows import document_from_row
from skr.domain.models import ChunkKind, Document, PageWrite
from skr.ports.vectors import Vector


@dataclass(frozen=True, slots=True)
class PageWritten:
    document: Document
    removed: list[int]
    added: list[int]
    vectors: Vector
    generation: int


def now_text() -> str:
    return datetime.now(UTC).isoformat()


def bump_generation(conn: sqlite3.Connection, collection_id: str) -> int:
    row = conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, 1) "
        "ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value",
        (f"vecgen:{collection_id}",),
    ).fetchone()
    return int(row[0])


def vector_generation(conn: sqlite3.Connection, collection_id: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (f"vecgen:{collection_id}",))
    found = row.fetchone()
    return int(found[0]) if found else 0


def write_page_rows(conn: sqlite3.Connection, page: PageWrite, vectors: Vector) -> PageWritten:
    now = now_text()
    existing = conn.execute(
        "SELECT id FROM documents WHERE collection_id = ? AND url = ?",
        (page.collection_id, page.url),
    ).fetchone()
    image_count = sum(1 for c in page.chunks if c.kind is ChunkKind.IMAGE)
    fields = (
        page.final_url, page.title, page.content_hash, page.etag, page.last_modified, now,
        "indexed", len(page.chunks) - image_count, image_count,
    )  # fmt: skip
    removed: list[int] = []
    if existing is None:
        document_id = uuid.uuid4().hex
        conn.execute(
            "INSERT INTO documents (id, collection_id, url, final_url, title, content_hash, "
            "etag, last_modified, fetched_at, status, chunk_count, image_count) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (document_id, page.collection_id, page.url, *fields),
        )
    else:
        document_id = existing[0]
        removed = [
            int(r[0])
            for r in conn.execute("SELECT seq FROM chunks WHERE document_id = ?", (document_id,))
        ]
        conn.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
        conn.execute(
            "UPDATE documents SET final_url = ?, title = ?, content_hash = ?, etag = ?, "
            "last_modified = ?, fetched_at = ?, status = ?, chunk_count = ?, image_count = ? "
            "WHERE id = ?",
            (*fields, document_id),
        )
    added = [_insert_chunk(conn, page, document_id, i, vectors[i]) for i in range(len(page.chunks))]
    generation = bump_generation(conn, page.collection_id)
    row = conn.execute("SELECT * FROM documents WHERE id = ?", (document_id,)).fetchone()
    return PageWritten(document_from_row(row), removed, added, vectors, generation)


def _insert_chunk(
    conn: sqlite3.Connection, page: PageWrite, document_id: str, i: int, vector: Vector
) -> int:
    draft = page.chunks[i]
    chunk_id = uuid.uuid4().hex
    cursor = conn.execute(
        "INSERT INTO chunks (id, document_id, collection_id, ordinal, kind, title, "
        "heading_path, text, token_count, model_id, embedding) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            chunk_id, document_id, page.collection_id, draft.ordinal, draft.kind.value,
            page.title, draft.heading_path, draft.text, draft.token_count, page.model_id,
            np.asarray(vector, dtype=np.float32).tobytes(),
        ),
    )  # fmt: skip
    if draft.image is not None:
        image = draft.image
        conn.execute(
            "INSERT INTO images (chunk_id, src, alt, title, caption, surrounding_text, ocr_text) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (chunk_id, image.src, image.alt, image.title, image.caption,
             image.surrounding_text, image.ocr_text),
        )  # fmt: skip
    return int(cursor.lastrowid or 0)
