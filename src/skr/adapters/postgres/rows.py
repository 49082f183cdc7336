"""Rows of the PostgreSQL tables turned into domain objects, and page fields made storable."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

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
    PageWrite,
)
from skr.ports.crawl_frontier import FrontierItem
from skr.ports.vectors import Vector

Row = dict[str, Any]

CHUNK_COLUMNS = (
    "c.id, c.document_id, c.collection_id, c.ordinal, c.kind, c.text, c.heading_path, "
    "c.token_count, c.title, d.url, i.src AS image_src, i.alt AS image_alt, "
    "i.title AS image_title, i.caption AS image_caption, "
    "i.surrounding_text AS image_surrounding, i.ocr_text AS image_ocr"
)


def storable(text: str) -> str:
    """``text`` without NUL characters, which PostgreSQL text columns cannot hold."""
    return text.replace("\x00", "")


def storable_or_none(text: str | None) -> str | None:
    return None if text is None else storable(text)


def collection_from_row(row: Row) -> Collection:
    return Collection(
        id=row["id"],
        name=row["name"],
        tenant=row["tenant"],
        created_at=row["created_at"],
    )


def document_from_row(row: Row) -> Document:
    return Document(
        id=row["id"],
        collection_id=row["collection_id"],
        url=row["url"],
        final_url=row["final_url"],
        title=row["title"],
        content_hash=row["content_hash"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        fetched_at=row["fetched_at"],
        status=row["status"],
        chunk_count=row["chunk_count"],
        image_count=row["image_count"],
    )


def chunk_from_row(row: Row) -> Chunk:
    """A row selected with ``CHUNK_COLUMNS`` (chunks c, documents d, images i)."""
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


def job_from_row(row: Row) -> Job:
    return Job(
        id=row["id"],
        kind=JobKind(row["kind"]),
        status=JobStatus(row["status"]),
        collection_id=row["collection_id"],
        url=row["url"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        counters=JobCounters(**row["counters"]),
        errors=[JobError(**e) for e in row["errors"]],
        attempts=row["attempts"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        reason=row["reason"],
        options=dict(row["options"]),
    )


def key_from_row(row: Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        scopes=frozenset(Scope(s) for s in row["scopes"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def as_utc(moment: datetime | None) -> datetime | None:
    """A naive datetime is taken to be UTC; the server's time zone never leaks out."""
    if moment is None:
        return None
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC)


def frontier_item_from_row(row: Row) -> FrontierItem:
    return FrontierItem(
        url=row["url"],
        depth=row["depth"],
        lastmod=as_utc(row["lastmod"]),
        attempts=row["attempts"],
    )


def page_rows(
    page: PageWrite, document_id: str, vectors: Vector
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Parameters of the chunk inserts and of the image inserts of one page."""
    chunks: list[tuple[object, ...]] = []
    images: list[tuple[object, ...]] = []
    title = storable(page.title)
    for draft, vector in zip(page.chunks, vectors, strict=True):
        chunk_id = uuid.uuid4().hex
        chunks.append(
            (
                chunk_id, document_id, page.collection_id, draft.ordinal, draft.kind.value,
                title, storable(draft.heading_path), storable(draft.text), draft.token_count,
                page.model_id, vector,
            )
        )  # fmt: skip
        if draft.image is not None:
            image = draft.image
            images.append(
                (
                    chunk_id, storable(image.src), storable(image.alt), storable(image.title),
                    storable(image.caption), storable(image.surrounding_text),
                    storable(image.ocr_text),
                )
            )  # fmt: skip
    return chunks, images
