"""The PostgreSQL store's searches: the statements of both rankings and of their fusion,
and how they run under pgvector's HNSW settings."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from skr.adapters.postgres.database import Connection
from skr.adapters.postgres.rows import CHUNK_COLUMNS, Row
from skr.domain.models import ChunkKind, Fusion
from skr.domain.query_terms import keyword_terms

_MIN_EF_SEARCH = 80
_MAX_EF_SEARCH = 1000  # the largest value pgvector accepts

# Settings that hold for the rest of the transaction: a wide enough candidate list, and
# pgvector 0.8's iterative scan, so that a filtered HNSW scan keeps going until it has
# found enough rows of the collection (the relaxed order is sorted again afterwards).
_HNSW_SETTINGS = (
    "SELECT set_config('hnsw.ef_search', %s, true), "
    "set_config('hnsw.iterative_scan', 'relaxed_order', true)"
)

CHUNKS_BY_ID = (
    f"SELECT {CHUNK_COLUMNS} FROM chunks c "  # noqa: S608 - a constant column list
    "JOIN documents d ON d.id = c.document_id "
    "LEFT JOIN images i ON i.chunk_id = c.id WHERE c.id = ANY(%s)"
)

# Candidates of both rankings. The hybrid query embeds the very same text, so that its
# rankings are those of keyword_search and vector_search; ties are broken by seq.
# Keyword: every chunk with a query word (the GIN index), ranked by BM25 as the dot
# product of its stored term weights with the query's IDF vector (migration 4): ts_rank
# knows no document frequency, and BM25 ranked far better at a modest extra cost, counting
# document frequencies included (docs/benchmarks.md, "Retrieval quality on SciFact").
KEYWORD_CANDIDATES = (
    "SELECT c.id, c.seq, (c.bm25 <#> v.weights) * -1 AS rank "
    "FROM chunks c, websearch_to_tsquery('english', %(words)s) AS q (query), "
    "skr_bm25_query(%(collection)s, %(words)s) AS v (weights) "
    "WHERE c.tsv @@ q.query AND c.collection_id = %(collection)s{kind} "
    "ORDER BY rank DESC, c.seq LIMIT %(candidates)s"
)
VECTOR_CANDIDATES = (
    "SELECT c.id, c.seq, c.embedding <=> %(vector)s AS distance FROM chunks c "
    "WHERE c.collection_id = %(collection)s AND c.model_id = %(model)s{kind} "
    "ORDER BY distance LIMIT %(candidates)s"
)
VECTOR_RESORTED = "SELECT id, distance FROM ({nearest}) AS nearest ORDER BY distance, seq"
# One statement, one round trip: both rankings, numbered, joined and fused as
# skr.domain.ranking fuses them. A chunk missing from one ranking gets nothing from it
# (RRF), or that ranking's floor (score fusion); ties are ordered as the domain orders them
# (keyword ranking first, then the vector-only chunks by vector rank).
_RANKINGS = """
WITH keyword AS (
    SELECT id, row_number() OVER (ORDER BY rank DESC, seq) AS rank_no, rank::float8 AS score
    FROM ({best}) AS best
),
semantic AS (
    SELECT id, row_number() OVER (ORDER BY distance, seq) AS rank_no, 1 - distance AS score
    FROM ({nearest}) AS nearest
)"""
_RRF = """
SELECT coalesce(kw.id, vec.id) AS id,
    coalesce(%(keyword_weight)s::float8 / (%(rrf_k)s::int8 + kw.rank_no), 0)
    + coalesce(%(vector_weight)s::float8 / (%(rrf_k)s::int8 + vec.rank_no), 0) AS score
FROM keyword kw FULL OUTER JOIN semantic vec ON vec.id = kw.id
ORDER BY score DESC, kw.rank_no NULLS LAST, vec.rank_no
LIMIT %(k)s
"""
# Each score over the ranking's best (0 when negative, or when the best is not positive);
# the floor is the lowest of those when the ranking is full, else 0.
_SCORE_FUSION = """,
kw AS (
    SELECT id, rank_no, CASE WHEN max(score) OVER () > 0
        THEN greatest(score, 0) / max(score) OVER () ELSE 0 END AS norm
    FROM keyword
),
vec AS (
    SELECT id, rank_no, CASE WHEN max(score) OVER () > 0
        THEN greatest(score, 0) / max(score) OVER () ELSE 0 END AS norm
    FROM semantic
),
floors AS (
    SELECT
        (SELECT CASE WHEN count(*) >= %(candidates)s THEN min(norm) ELSE 0 END FROM kw)
            AS kw_floor,
        (SELECT CASE WHEN count(*) >= %(candidates)s THEN min(norm) ELSE 0 END FROM vec)
            AS vec_floor
)
SELECT coalesce(kw.id, vec.id) AS id,
    %(keyword_weight)s::float8 * coalesce(kw.norm, floors.kw_floor)
    + %(vector_weight)s::float8 * coalesce(vec.norm, floors.vec_floor) AS score
FROM kw FULL OUTER JOIN vec ON vec.id = kw.id CROSS JOIN floors
ORDER BY score DESC, kw.rank_no NULLS LAST, vec.rank_no
LIMIT %(k)s
"""
HYBRID = {Fusion.RRF: _RANKINGS + _RRF, Fusion.SCORE: _RANKINGS + _SCORE_FUSION}


def tsquery_words(text: str) -> str:
    """A ``websearch_to_tsquery`` input that matches any word of ``text``: only word
    characters and ``OR`` reach PostgreSQL, and that function never raises on its input."""
    terms = keyword_terms(text)
    return " OR ".join(terms)


def with_kind(template: str, kind: ChunkKind | None) -> sql.Composed:
    """``template`` with its ``{kind}`` slot filled by the kind filter, or by nothing."""
    kind_filter = sql.SQL(" AND c.kind = %(kind)s" if kind is not None else "")
    return sql.SQL(template).format(kind=kind_filter)


async def hnsw_fetch(
    conn: Connection, query: sql.Composed, params: dict[str, Any], k: int
) -> list[Row]:
    """Run ``query`` in a transaction of its own after the HNSW settings for ``k``
    nearest rows; pipelined, so the settings cost no extra round trip."""
    ef_search = min(max(_MIN_EF_SEARCH, k), _MAX_EF_SEARCH)
    async with conn.pipeline(), conn.transaction():
        await conn.execute(_HNSW_SETTINGS, (str(ef_search),))
        cursor = await conn.execute(query, params)
        return await cursor.fetchall()
