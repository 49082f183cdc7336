"""The embedded store's searches, run on a reader's connection: FTS5 keyword ranking, the
HNSW index's nearest chunks, and the chunk rows they point at."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import numpy as np

from skr.adapters.sqlite.hnsw_index import HnswIndex
from skr.adapters.sqlite.rows import SELECT_CHUNKS
from skr.domain.models import ChunkKind, ScoredId
from skr.domain.query_terms import keyword_terms
from skr.ports.vectors import Vector


def fts_query(text: str) -> str | None:
    """A safe FTS5 query: every word of ``text`` quoted, joined with OR."""
    terms = keyword_terms(text)
    if not terms:
        return None
    return " OR ".join(f'"{term}"' for term in terms)


def chunk_rows(conn: sqlite3.Connection, chunk_ids: Sequence[str]) -> list[sqlite3.Row]:
    """The rows :func:`chunk_from_row` reads, of these chunks, in no particular order."""
    if not chunk_ids:
        return []
    marks = ",".join("?" * len(chunk_ids))
    sql = f"{SELECT_CHUNKS} WHERE c.id IN ({marks})"
    return conn.execute(sql, list(chunk_ids)).fetchall()


KEYWORD_RANKED_MAX = 4096
"""The most FTS5 matches :func:`keyword_search` ranks before it filters by collection
in one join instead."""


def keyword_search(
    conn: sqlite3.Connection,
    collection_id: str,
    match: str,
    k: int,
    kind: ChunkKind | None,
    ranked_max: int = KEYWORD_RANKED_MAX,
) -> list[ScoredId]:
    """The best ``k`` chunks of the collection for an FTS5 ``match``, by BM25 (title 2,
    heading 1.5, text 1).

    FTS5 ranks the matches of every collection by itself, and only the best are looked up
    in ``chunks`` for their collection and kind, four times as many each time too few of
    them belong: joining every match to ``chunks`` first costs more than ranking them
    (docs/benchmarks/history.md, runs Z9–Z14, "Changed this session")."""
    limit = k
    while limit <= ranked_max:
        ranked = conn.execute(
            "SELECT rowid, bm25(chunks_fts, 2.0, 1.5, 1.0) AS score FROM chunks_fts "
            "WHERE chunks_fts MATCH ? ORDER BY score LIMIT ?",
            (match, limit),
        ).fetchall()
        if not ranked:
            return []
        marks = ",".join("?" * len(ranked))
        sql = f"SELECT seq, id FROM chunks WHERE seq IN ({marks}) AND collection_id = ?"  # noqa: S608
        params: list[object] = [r[0] for r in ranked]
        params.append(collection_id)
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind.value)
        ours = dict(conn.execute(sql, params).fetchall())
        hits = [ScoredId(ours[seq], -float(score)) for seq, score in ranked if seq in ours]
        if len(hits) >= k or len(ranked) < limit:
            return hits[:k]
        limit *= 4
    return keyword_search_joined(conn, collection_id, match, k, kind)


def keyword_search_joined(
    conn: sqlite3.Connection, collection_id: str, match: str, k: int, kind: ChunkKind | None
) -> list[ScoredId]:
    """:func:`keyword_search` in one statement: every match joined to ``chunks``."""
    sql = (
        "SELECT c.id, bm25(chunks_fts, 2.0, 1.5, 1.0) AS rank FROM chunks_fts "
        "JOIN chunks c ON c.seq = chunks_fts.rowid "
        "WHERE chunks_fts MATCH ? AND c.collection_id = ?"
    )
    params: list[object] = [match, collection_id]
    if kind is not None:
        sql += " AND c.kind = ?"
        params.append(kind.value)
    sql += " ORDER BY rank LIMIT ?"
    params.append(k)
    return [ScoredId(r[0], -float(r[1])) for r in conn.execute(sql, params).fetchall()]


def vector_search(
    conn: sqlite3.Connection, index: HnswIndex, vector: Vector, k: int, kind: ChunkKind | None
) -> list[ScoredId]:
    """The ``k`` nearest chunks in ``index``; with a ``kind``, four times as many are
    looked up first, so that filtering by kind still leaves ``k``."""
    found = index.search(np.asarray(vector, dtype=np.float32), k if kind is None else k * 4)
    if not found:
        return []
    marks = ",".join("?" * len(found))
    rows = conn.execute(
        f"SELECT seq, id, kind FROM chunks WHERE seq IN ({marks})",  # noqa: S608
        [label for label, _ in found],
    ).fetchall()
    by_seq = {int(r[0]): (r[1], r[2]) for r in rows}
    hits: list[ScoredId] = []
    for label, score in found:
        entry = by_seq.get(label)
        if entry is None or (kind is not None and entry[1] != kind.value):
            continue
        hits.append(ScoredId(entry[0], score))
    return hits[:k]
