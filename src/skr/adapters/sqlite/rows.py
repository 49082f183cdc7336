"""Rows of the embedded store turned into domain objects."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from skr.domain.models import Chunk, ChunkKind, Collection, Document, ImageInfo


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
