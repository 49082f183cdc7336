"""The embedded Store: SQLite (WAL, one writer) as the source of truth, FTS5 for keywords,
and per-collection HNSW indexes derived from the vectors SQLite keeps."""

from __future__ import annotations

import functools
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import numpy as np

from skr.adapters.sqlite.database import SQLiteDatabase
from skr.adapters.sqlite.export import read_stored_page, stored_pages
from skr.adapters.sqlite.hnsw_index import HnswIndex, HnswParams
from skr.adapters.sqlite.page_writes import (
    PageWritten,
    bump_generation,
    now_text,
    vector_generation,
    write_page_rows,
)
from skr.adapters.sqlite.rows import chunk_from_row, collection_from_row, document_from_row
from skr.adapters.sqlite.search_queries import chunk_rows, fts_query, keyword_search, vector_search
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
from skr.domain.ranking import fuse
from skr.ports.store import StoredPage
from skr.ports.vectors import Vector

logger = logging.getLogger(__name__)

_TENANT_DOCUMENT = (
    "SELECT d.* FROM documents d JOIN collections k ON k.id = d.collection_id "
    "WHERE d.id = ? AND k.tenant = ?"
)


class SQLiteStore:
    """Implements the Store port on one SQLite file plus an ``ann/`` folder beside it."""

    def __init__(
        self,
        database: SQLiteDatabase,
        index_dir: Path,
        *,
        model_id: str,
        dimensions: int,
        hnsw: HnswParams | None = None,
    ) -> None:
        self._db = database
        self._index_dir = index_dir
        self._model_id = model_id
        self._dimensions = dimensions
        self._hnsw = hnsw or HnswParams()
        self._indexes: dict[str, HnswIndex] = {}

    # lifecycle -----------------------------------------------------------

    async def load_indexes(self) -> None:
        """Load each collection's saved index, or rebuild it when missing or stale."""
        self._index_dir.mkdir(parents=True, exist_ok=True)
        ids: list[str] = await self._db.read(
            lambda c: [r[0] for r in c.execute("SELECT id FROM collections")]
        )
        for collection_id in ids:
            self._indexes[collection_id] = await self._db.read(
                functools.partial(self._load_or_build, collection_id=collection_id)
            )

    def _load_or_build(self, conn: sqlite3.Connection, collection_id: str) -> HnswIndex:
        generation = vector_generation(conn, collection_id)
        path = self._index_path(collection_id)
        loaded = HnswIndex.load(path, self._dimensions, self._hnsw, generation, self._model_id)
        if loaded is not None:
            return loaded
        logger.info("rebuilding the vector index of collection %s from SQLite", collection_id)
        rows = conn.execute(
            "SELECT seq, embedding FROM chunks WHERE collection_id = ? AND model_id = ?",
            (collection_id, self._model_id),
        )
        index = HnswIndex.build(
            self._dimensions,
            self._hnsw,
            ((int(seq), np.frombuffer(blob, dtype=np.float32)) for seq, blob in rows),
        )
        index.dirty = True
        return index

    async def save_indexes(self) -> None:
        """Save every changed index with the generation it reflects (on the writer
        thread, so no write slips in between)."""
        await self._db.write(self._save_dirty)

    def _save_dirty(self, conn: sqlite3.Connection) -> None:
        for collection_id, index in list(self._indexes.items()):
            if index.dirty:
                generation = vector_generation(conn, collection_id)
                index.save(self._index_path(collection_id), generation, self._model_id)

    def _index_path(self, collection_id: str) -> Path:
        return self._index_dir / f"{collection_id}.hnsw"

    def _index(self, collection_id: str) -> HnswIndex:
        index = self._indexes.get(collection_id)
        if index is None:
            index = self._indexes.setdefault(collection_id, HnswIndex(self._dimensions, self._hnsw))
        return index

    async def refresh_statistics(self) -> None:
        await self._db.write(lambda c: c.execute("PRAGMA optimize").fetchall())

    async def ping(self) -> None:
        await self._db.read(lambda c: c.execute("SELECT 1").fetchone())

    # collections ----------------------------------------------------------

    async def ensure_collection(self, name: str, tenant: str) -> Collection:
        def run(conn: sqlite3.Connection) -> Collection:
            row = conn.execute(
                "SELECT * FROM collections WHERE tenant = ? AND name = ?", (tenant, name)
            ).fetchone()
            if row is not None:
                return collection_from_row(row)
            return self._insert_collection(conn, name, tenant)

        return await self._db.write(run)

    async def create_collection(self, name: str, tenant: str) -> Collection:
        def run(conn: sqlite3.Connection) -> Collection:
            try:
                return self._insert_collection(conn, name, tenant)
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"a collection named {name!r} already exists") from exc

        return await self._db.write(run)

    def _insert_collection(self, conn: sqlite3.Connection, name: str, tenant: str) -> Collection:
        row = conn.execute(
            "INSERT INTO collections (id, name, tenant, created_at) VALUES (?, ?, ?, ?) "
            "RETURNING *",
            (uuid.uuid4().hex, name, tenant, now_text()),
        ).fetchone()
        return collection_from_row(row)

    async def get_collection(self, name: str, tenant: str) -> Collection:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT * FROM collections WHERE tenant = ? AND name = ?", (tenant, name)
            ).fetchone()
        )
        if row is None:
            raise NotFoundError(f"there is no collection named {name!r}")
        return collection_from_row(row)

    async def list_collections(self, tenant: str) -> list[Collection]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT * FROM collections WHERE tenant = ? ORDER BY created_at, name", (tenant,)
            ).fetchall()
        )
        return [collection_from_row(r) for r in rows]

    async def list_all_collections(self) -> list[Collection]:
        rows = await self._db.read(
            lambda c: c.execute("SELECT * FROM collections ORDER BY tenant, name").fetchall()
        )
        return [collection_from_row(r) for r in rows]

    def export_documents(self, collection_id: str) -> AsyncIterator[StoredPage]:
        return stored_pages(self._db, collection_id, self._dimensions)

    # documents -------------------------------------------------------------

    async def find_document(self, collection_id: str, url: str) -> Document | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT * FROM documents WHERE collection_id = ? AND url = ?", (collection_id, url)
            ).fetchone()
        )
        return None if row is None else document_from_row(row)

    async def stored_page(self, document_id: str) -> StoredPage | None:
        return await self._db.read(
            functools.partial(
                read_stored_page, document_id=document_id, dimensions=self._dimensions
            )
        )

    async def write_page(self, page: PageWrite) -> Document:
        if page.vectors.shape[0] != len(page.chunks):
            raise InvalidInputError("every chunk needs exactly one vector")
        vectors = np.asarray(page.vectors, dtype=np.float32).reshape(
            len(page.chunks), self._dimensions
        )
        result = await self._db.write(
            lambda c: write_page_rows(c, page, vectors), after_commit=self._apply_to_index
        )
        return result.document

    def _apply_to_index(self, written: PageWritten) -> None:
        index = self._index(written.document.collection_id)
        index.remove(written.removed)
        if written.added:
            index.add(written.added, written.vectors)

    async def mark_fetched(
        self, document_id: str, etag: str | None, last_modified: str | None
    ) -> None:
        await self._db.write(
            lambda c: c.execute(
                "UPDATE documents SET fetched_at = ?, etag = coalesce(?, etag), "
                "last_modified = coalesce(?, last_modified) WHERE id = ?",
                (now_text(), etag, last_modified, document_id),
            )
        )

    async def get_document(self, document_id: str, tenant: str) -> Document:
        row = await self._db.read(
            lambda c: c.execute(_TENANT_DOCUMENT, (document_id, tenant)).fetchone()
        )
        if row is None:
            raise NotFoundError(f"there is no document with id {document_id!r}")
        return document_from_row(row)

    async def list_documents(
        self, collection_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Document], str | None]:
        after = decode_cursor(cursor)
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT rowid AS position, * FROM documents "
                "WHERE collection_id = ? AND rowid > ? ORDER BY rowid LIMIT ?",
                (collection_id, after, limit + 1),
            ).fetchall()
        )
        page = rows[:limit]
        next_cursor = str(page[-1]["position"]) if len(rows) > limit else None
        return [document_from_row(r) for r in page], next_cursor

    async def delete_document(self, document_id: str, tenant: str) -> None:
        def run(conn: sqlite3.Connection) -> PageWritten:
            row = conn.execute(_TENANT_DOCUMENT, (document_id, tenant)).fetchone()
            if row is None:
                raise NotFoundError(f"there is no document with id {document_id!r}")
            removed = [
                int(r[0])
                for r in conn.execute(
                    "SELECT seq FROM chunks WHERE document_id = ?", (document_id,)
                )
            ]
            conn.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
            conn.execute("DELETE FROM documents WHERE id = ?", (document_id,))
            generation = bump_generation(conn, row["collection_id"])
            empty = np.empty((0, self._dimensions), dtype=np.float32)
            return PageWritten(document_from_row(row), removed, [], empty, generation)

        await self._db.write(run, after_commit=self._apply_to_index)

    # search ------------------------------------------------------------------

    async def keyword_search(
        self, collection_id: str, query: str, k: int, kind: ChunkKind | None
    ) -> list[ScoredId]:
        match = fts_query(query)
        if match is None:
            return []
        return await self._db.read(lambda c: keyword_search(c, collection_id, match, k, kind))

    async def vector_search(
        self, collection_id: str, vector: Vector, k: int, kind: ChunkKind | None
    ) -> list[ScoredId]:
        index = self._indexes.get(collection_id)
        if index is None:
            return []
        return await self._db.read(lambda c: vector_search(c, index, vector, k, kind))

    async def hybrid_search(self, collection_id: str, query: HybridQuery) -> list[ScoredId]:
        """Both rankings in one read on one reader thread: a hand-off to a thread and back
        costs each search a wait for the event loop, and under load that wait, not the
        ranking (a few ms), is what grows."""
        rank = self._hybrid_ranking(collection_id, query)
        return await self._db.read(rank)

    async def hybrid_search_chunks(
        self, collection_id: str, query: HybridQuery
    ) -> list[tuple[Chunk, float]]:
        """The ranking and its chunks in one read: one hand-off to a reader thread, not
        two, because under load each hand-off waits for a core, and that wait, not the
        reading, is what grows (docs/benchmarks.md, "What one request costs (runs
        Z9–Z14)")."""
        rank = self._hybrid_ranking(collection_id, query)

        def read(conn: sqlite3.Connection) -> tuple[list[ScoredId], list[sqlite3.Row]]:
            ranked = rank(conn)
            return ranked, chunk_rows(conn, [item.chunk_id for item in ranked])

        ranked, rows = await self._db.read(read)
        by_id = {r["id"]: chunk_from_row(r) for r in rows}
        return [(by_id[s.chunk_id], s.score) for s in ranked if s.chunk_id in by_id]

    def _hybrid_ranking(
        self, collection_id: str, query: HybridQuery
    ) -> Callable[[sqlite3.Connection], list[ScoredId]]:
        match = fts_query(query.text)
        index = self._indexes.get(collection_id)
        k, kind = query.candidates, query.kind

        def rank(conn: sqlite3.Connection) -> list[ScoredId]:
            keyword = [] if match is None else keyword_search(conn, collection_id, match, k, kind)
            semantic = [] if index is None else vector_search(conn, index, query.vector, k, kind)
            return fuse(query, keyword, semantic)

        return rank

    async def get_chunks(self, chunk_ids: Sequence[str]) -> list[Chunk]:
        if not chunk_ids:
            return []
        rows = await self._db.read(lambda c: chunk_rows(c, chunk_ids))
        by_id = {r["id"]: chunk_from_row(r) for r in rows}
        return [by_id[i] for i in chunk_ids if i in by_id]
