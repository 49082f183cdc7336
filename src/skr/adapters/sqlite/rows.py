"""Rows of the embedded database's tables turned into domain objects."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

from skr.domain.access import ApiKey, Scope
from skr.domain.models import (
    Chunk,
    ChunkKind,
    Collection,
    Document,
    ImageInfo,
    Job,
    JobCounters,
    JobError,
    JobKind,
    JobStatus,
)

SELECT_CHUNKS = (
    "SELECT c.*, d.url AS url, i.src AS image_src, i.alt AS image_alt, "
    "i.title AS image_title, i.caption AS image_caption, "
    "i.surrounding_text AS image_surrounding, i.ocr_text AS image_ocr "
    "FROM chunks c JOIN documents d ON d.id = c.document_id "
    "LEFT JOIN images i ON i.chunk_id = c.id"
)
"""The rows :func:`chunk_from_row` reads (chunks c, documents d, images i), for a
``WHERE`` to follow."""


def collection_from_row(row: sqlite3.Row) -> Collection:
    return Collection(
        id=row["id"],
        name=row["name"],
        tenant=row["tenant"],
        created_at=datetime.fromisoformat(row["created_at"]),
    )


def document_from_row(row: sqlite3.Row) -> Document:
    return Document(
        id=row["id"],
        collection_id=row["collection_id"],
        url=row["url"],
        final_url=row["final_url"],
        title=row["title"],
        content_hash=row["content_hash"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        fetched_at=datetime.fromisoformat(row["fetched_at"]),
        status=row["status"],
        chunk_count=row["chunk_count"],
        image_count=row["image_count"],
    )


def chunk_from_row(row: sqlite3.Row) -> Chunk:
    image = None
    if row["image_src"] is not None:
        image = ImageInfo(
            src=row["image_src"],
            alt=row["image_alt"],
            title=row["image_title"],
            caption=row["image_caption"],
            surrounding_text=row["image_surrounding"],
            ocr_text=row["image_ocr"],
        )
    return Chunk(
        id=row["id"],
        document_id=row["document_id"],
        collection_id=row["collection_id"],
        ordinal=row["ordinal"],
        kind=ChunkKind(row["kind"]),
        text=row["text"],
        heading_path=row["heading_path"],
        token_count=row["token_count"],
        url=row["url"],
        title=row["title"],
        image=image,
    )


def job_from_row(row: sqlite3.Row) -> Job:
    counters = JobCounters(**json.loads(row["counters"]))
    errors = [JobError(**e) for e in json.loads(row["errors"])]
    expires = row["lease_expires_at"]
    return Job(
        id=row["id"],
        kind=JobKind(row["kind"]),
        status=JobStatus(row["status"]),
        collection_id=row["collection_id"],
        url=row["url"],
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        started_at=datetime.fromisoformat(row["started_at"]) if row["started_at"] else None,
        finished_at=datetime.fromisoformat(row["finished_at"]) if row["finished_at"] else None,
        counters=counters,
        errors=errors,
        attempts=row["attempts"],
        lease_owner=row["lease_owner"],
        lease_expires_at=datetime.fromtimestamp(expires, UTC) if expires else None,
        reason=row["reason"],
        options=json.loads(row["options"]),
    )


def key_from_row(row: sqlite3.Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        scopes=frozenset(Scope(s) for s in row["scopes"].split(",") if s),
        created_at=datetime.fromisoformat(row["created_at"]),
        revoked_at=datetime.fromisoformat(row["revoked_at"]) if row["revoked_at"] else None,
    )
