"""The embedded store's schema, upgraded by numbered migrations kept in ``PRAGMA user_version``."""

from __future__ import annotations

import sqlite3

_MIGRATIONS: list[str] = [
    # 1: collections, documents, chunks (+ images), full-text index, jobs, meta
    """
    CREATE TABLE collections (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        tenant TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (tenant, name)
    );
    CREATE TABLE documents (
        id TEXT PRIMARY KEY,
        collection_id TEXT NOT NULL REFERENCES collections(id),
        url TEXT NOT NULL,
        final_url TEXT NOT NULL,
        title TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        etag TEXT,
        last_modified TEXT,
        fetched_at TEXT NOT NULL,
        status TEXT NOT NULL,
        chunk_count INTEGER NOT NULL,
        image_count INTEGER NOT NULL,
        UNIQUE (collection_id, url)
    );
    CREATE TABLE chunks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        collection_id TEXT NOT NULL,
        ordinal INTEGER NOT NULL,
        kind TEXT NOT NULL,
        title TEXT NOT NULL,
        heading_path TEXT NOT NULL,
        text TEXT NOT NULL,
        token_count INTEGER NOT NULL,
        model_id TEXT NOT NULL,
        embedding BLOB NOT NULL
    );
    CREATE INDEX chunks_by_document ON chunks (document_id, ordinal);
    CREATE INDEX chunks_by_collection ON chunks (collection_id);
    CREATE TABLE images (
        chunk_id TEXT PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
        src TEXT NOT NULL,
        alt TEXT NOT NULL,
        title TEXT NOT NULL,
        caption TEXT NOT NULL,
        surrounding_text TEXT NOT NULL,
        ocr_text TEXT NOT NULL
    );
    CREATE VIRTUAL TABLE chunks_fts USING fts5 (
        title, heading_path, text,
        content = 'chunks', content_rowid = 'seq',
        tokenize = 'porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts (rowid, title, heading_path, text)
        VALUES (new.seq, new.title, new.heading_path, new.text);
    END;
    CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts (chunks_fts, rowid, title, heading_path, text)
        VALUES ('delete', old.seq, old.title, old.heading_path, old.text);
    END;
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        collection_id TEXT NOT NULL,
        url TEXT NOT NULL,
        options TEXT NOT NULL,
        counters TEXT NOT NULL,
        errors TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_expires_at REAL,
        reason TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT
    );
    CREATE INDEX jobs_by_status ON jobs (status, seq);
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    """,
    # 2: jobs wait out a backoff after a transient failure
    """
    ALTER TABLE jobs ADD COLUMN not_before REAL;
    """,
    # 3: the crawl frontier, every URL of a crawl job with its state and lease;
    # times are Unix seconds like the jobs table's, seq is the order of adding per job
    """
    CREATE TABLE crawl_frontier (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        url TEXT NOT NULL,
        seq INTEGER NOT NULL,
        depth INTEGER NOT NULL,
        lastmod TEXT,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        lease_owner TEXT,
        lease_expires_at REAL,
        not_before REAL,
        PRIMARY KEY (job_id, url)
    );
    CREATE INDEX crawl_frontier_to_lease ON crawl_frontier (job_id, depth, seq)
        WHERE state IN ('pending', 'leased');
    """,
    # 4: API keys: the tenant and scopes of each, the hash of its secret (never the secret)
    """
    CREATE TABLE api_keys (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    """,
]

SCHEMA_VERSION = len(_MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations this database has not seen yet; returns the new version."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"the database has schema version {version}, newer than this SKR ({SCHEMA_VERSION})"
        )
    for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
        conn.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")
    return SCHEMA_VERSION
