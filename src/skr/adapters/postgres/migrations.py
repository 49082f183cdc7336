"""The PostgreSQL schema, created and upgraded by numbered migrations (``skr migrate``)."""

from __future__ import annotations

import logging
from typing import Any

from psycopg import AsyncConnection, sql

logger = logging.getLogger(__name__)

_LOCK_ID = 0x534B52  # "SKR": one migrator at a time

MIGRATIONS: list[str] = [
    # 1: collections, documents, chunks with vectors and full text, images, jobs
    """
    CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;
    CREATE TABLE collections (
        id text PRIMARY KEY,
        name text NOT NULL,
        tenant text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (tenant, name)
    );
    CREATE TABLE documents (
        seq bigserial UNIQUE,
        id text PRIMARY KEY,
        collection_id text NOT NULL REFERENCES collections (id),
        url text NOT NULL,
        final_url text NOT NULL,
        title text NOT NULL,
        content_hash text NOT NULL,
        etag text,
        last_modified text,
        fetched_at timestamptz NOT NULL,
        status text NOT NULL,
        chunk_count integer NOT NULL,
        image_count integer NOT NULL,
        UNIQUE (collection_id, url)
    );
    CREATE TABLE chunks (
        seq bigserial PRIMARY KEY,
        id text NOT NULL UNIQUE,
        document_id text NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
        collection_id text NOT NULL,
        ordinal integer NOT NULL,
        kind text NOT NULL,
        title text NOT NULL,
        heading_path text NOT NULL,
        text text NOT NULL,
        token_count integer NOT NULL,
        model_id text NOT NULL,
        embedding vector(384) NOT NULL,
        tsv tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('english', title), 'A')
            || setweight(to_tsvector('english', heading_path), 'B')
            || setweight(to_tsvector('english', text), 'C')
        ) STORED
    );
    CREATE INDEX chunks_by_document ON chunks (document_id, ordinal);
    CREATE INDEX chunks_by_collection ON chunks (collection_id, kind);
    CREATE INDEX chunks_tsv ON chunks USING gin (tsv);
    CREATE INDEX chunks_embedding ON chunks
        USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
    CREATE TABLE images (
        chunk_id text PRIMARY KEY REFERENCES chunks (id) ON DELETE CASCADE,
        src text NOT NULL,
        alt text NOT NULL,
        title text NOT NULL,
        caption text NOT NULL,
        surrounding_text text NOT NULL,
        ocr_text text NOT NULL
    );
    CREATE TABLE jobs (
        seq bigserial PRIMARY KEY,
        id text NOT NULL UNIQUE,
        kind text NOT NULL,
        status text NOT NULL,
        collection_id text NOT NULL,
        url text NOT NULL,
        options jsonb NOT NULL DEFAULT '{}',
        counters jsonb NOT NULL,
        errors jsonb NOT NULL DEFAULT '[]',
        attempts integer NOT NULL DEFAULT 0,
        lease_owner text,
        lease_expires_at timestamptz,
        not_before timestamptz,
        reason text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        started_at timestamptz,
        finished_at timestamptz
    );
    CREATE INDEX jobs_queued ON jobs (seq) WHERE status = 'queued';
    CREATE INDEX jobs_running ON jobs (lease_expires_at) WHERE status = 'running';
    """,
    # 2: the crawl frontier, every URL of a crawl job with its state and lease;
    # seq is the order of adding per job
    """
    CREATE TABLE crawl_frontier (
        job_id text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        url text NOT NULL,
        seq bigint NOT NULL,
        depth integer NOT NULL,
        lastmod timestamptz,
        state text NOT NULL DEFAULT 'pending',
        attempts integer NOT NULL DEFAULT 0,
        last_error text,
        lease_owner text,
        lease_expires_at timestamptz,
        not_before timestamptz,
        PRIMARY KEY (job_id, url)
    );
    CREATE INDEX crawl_frontier_to_lease ON crawl_frontier (job_id, depth, seq)
        WHERE state IN ('pending', 'leased');
    """,
    # 3: API keys: the tenant and scopes of each, the hash of its secret (never the secret)
    """
    CREATE TABLE api_keys (
        seq bigserial PRIMARY KEY,
        id text NOT NULL UNIQUE,
        tenant text NOT NULL,
        name text NOT NULL,
        scopes text[] NOT NULL,
        secret_hash text NOT NULL,
        created_at timestamptz NOT NULL,
        revoked_at timestamptz
    );
    """,
    # 4: BM25 for keyword search. ts_rank knows no document frequency, so a query's rare,
    # telling words weighed no more than its common ones (docs/benchmarks.md, "Retrieval
    # quality on SciFact", compares the two). Each chunk keeps its BM25 term
    # weights as a sparse vector (k1 1.2, b 0.75, labels title 2 : heading 1.5 : text 1,
    # length pivot 150 weighted lexemes: chunks are cut to a bounded size, so a fixed pivot
    # stands in for the average); a query is a sparse vector of its lexemes' IDF, counted
    # in the collection at query time; the score is their dot product. A lexeme's
    # dimension is the first 29 bits of its md5: stable across PostgreSQL versions and
    # machines (hashtext is not promised to be), and collisions among a vocabulary of
    # millions in 2^29 slots are rare and only merge two words' weights.
    """
    CREATE FUNCTION skr_lexeme_dimension(lexeme text) RETURNS integer
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        RETURN (('x' || left(md5(lexeme), 8))::bit(32)::int8 & 536870911)::integer + 1;
    CREATE FUNCTION skr_bm25_document(document tsvector) RETURNS sparsevec
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    BEGIN ATOMIC
        WITH terms AS (
            SELECT skr_lexeme_dimension(t.lexeme) AS dimension,
                (SELECT sum(CASE w WHEN 'A' THEN 2.0 WHEN 'B' THEN 1.5 ELSE 1.0 END)
                    FROM unnest(t.weights) AS w) AS tf
            FROM unnest(document) AS t
        ),
        size AS (SELECT coalesce(sum(tf), 0) AS len FROM terms),
        merged AS (SELECT dimension, sum(tf) AS tf FROM terms GROUP BY dimension)
        SELECT ('{' || coalesce(string_agg(
            m.dimension || ':' || (m.tf * 2.2 / (m.tf + 1.2 * (0.25 + 0.75 * s.len / 150.0))),
            ',' ORDER BY m.dimension), '') || '}/536870912')::sparsevec
        FROM merged m RIGHT JOIN size s ON true;
    END;
    ALTER TABLE chunks ADD COLUMN bm25 sparsevec GENERATED ALWAYS AS (skr_bm25_document(
        setweight(to_tsvector('english', title), 'A')
        || setweight(to_tsvector('english', heading_path), 'B')
        || setweight(to_tsvector('english', text), 'C')
    )) STORED;
    CREATE FUNCTION skr_bm25_query(collection text, words text) RETURNS sparsevec
        LANGUAGE sql STABLE PARALLEL SAFE
    BEGIN ATOMIC
        WITH terms AS (
            SELECT DISTINCT t.lexeme FROM unnest(to_tsvector('english', words)) AS t
        ),
        chunk_count AS (SELECT count(*) AS n FROM chunks WHERE collection_id = collection),
        weights AS (
            SELECT skr_lexeme_dimension(t.lexeme) AS dimension,
                sum(ln(1 + (c.n - d.df + 0.5) / (d.df + 0.5))) AS idf
            FROM terms t CROSS JOIN chunk_count c CROSS JOIN LATERAL (
                SELECT count(*) AS df FROM chunks k WHERE k.collection_id = collection
                    AND k.tsv @@ plainto_tsquery('simple', t.lexeme)
            ) d
            GROUP BY 1
        )
        SELECT ('{' || coalesce(string_agg(dimension || ':' || idf, ',' ORDER BY dimension), '')
            || '}/536870912')::sparsevec FROM weights;
    END;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


async def schema_version(conn: AsyncConnection[Any]) -> int:
    """The version the database is at (0 for an empty one)."""
    cursor = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = await cursor.fetchone()
    if not row or not _first(row):
        return 0
    cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
    found = await cursor.fetchone()
    return int(_first(found)) if found else 0


async def migrate(conn: AsyncConnection[Any], schema: str | None = None) -> int:
    """Apply the migrations this database has not seen, each in its own transaction,
    holding an advisory lock so that concurrent migrators wait for each other."""
    async with conn.transaction():
        if schema is not None:
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await schema_version(conn)
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"the database has schema version {current}, newer than this SKR ({SCHEMA_VERSION})"
            )
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            logger.info("applying migration %d", number)
            await conn.execute(script.encode())
            await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))
    return SCHEMA_VERSION


def _first(row: Any) -> Any:
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]
