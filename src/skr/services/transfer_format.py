"""The ``skr-export`` file format: JSON Lines records written, and read back checked."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from skr.domain.models import Chunk, ChunkDraft, ChunkKind, Collection, ImageInfo, PageWrite
from skr.domain.vectors import Vector
from skr.ports.store import StoredPage

FORMAT = "skr-export"
VERSION = 1
_IMAGE_FIELDS = ("src", "alt", "title", "caption", "surrounding_text", "ocr_text")
_FLOAT32_LE = np.dtype("<f4")


class RecordError(ValueError):
    """A line that is not a well-formed record; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Header:
    model_id: str
    dimensions: int


@dataclass(frozen=True, slots=True)
class CollectionRecord:
    name: str
    tenant: str


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    collection: str
    tenant: str
    url: str
    final_url: str
    title: str
    content_hash: str
    etag: str | None
    last_modified: str | None
    chunks: list[ChunkDraft]
    vectors: Vector

    def page_write(self, collection_id: str, model_id: str) -> PageWrite:
        return PageWrite(
            collection_id=collection_id, url=self.url, final_url=self.final_url,
            title=self.title, content_hash=self.content_hash, etag=self.etag,
            last_modified=self.last_modified, chunks=self.chunks, model_id=model_id,
            vectors=self.vectors,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class EndRecord:
    """The last line: what came before it, so that a cut-off file is noticed."""

    collections: int
    documents: int


Record = CollectionRecord | DocumentRecord | EndRecord


# writing -------------------------------------------------------------------------


def _line(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n"


def header_line(model_id: str, dimensions: int, exported_at: datetime) -> str:
    return _line(
        {
            "format": FORMAT, "version": VERSION, "model_id": model_id,
            "dimensions": dimensions, "exported_at": exported_at.isoformat(),
        }
    )  # fmt: skip


def collection_line(collection: Collection) -> str:
    return _line({"type": "collection", "name": collection.name, "tenant": collection.tenant})


def document_line(stored: StoredPage, collection: Collection) -> str:
    d = stored.document
    chunks = [_chunk_fields(c, v) for c, v in zip(stored.chunks, stored.vectors, strict=True)]
    return _line(
        {
            "type": "document", "collection": collection.name, "tenant": collection.tenant,
            "url": d.url, "final_url": d.final_url, "title": d.title,
            "content_hash": d.content_hash, "etag": d.etag, "last_modified": d.last_modified,
            "fetched_at": d.fetched_at.isoformat(), "chunks": chunks,
        }
    )  # fmt: skip


def _chunk_fields(chunk: Chunk, vector: Vector) -> dict[str, Any]:
    image = chunk.image
    return {
        "ordinal": chunk.ordinal, "kind": chunk.kind.value, "heading_path": chunk.heading_path,
        "text": chunk.text, "token_count": chunk.token_count,
        "image": None if image is None else {f: getattr(image, f) for f in _IMAGE_FIELDS},
        "embedding": base64.b64encode(vector.astype(_FLOAT32_LE).tobytes()).decode("ascii"),
    }  # fmt: skip


def end_line(collections: int, documents: int) -> str:
    return _line({"type": "end", "collections": collections, "documents": documents})


# reading ---------------------------------------------------------------------------


def _object(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecordError(f"not a JSON record ({exc.msg})") from exc
    if not isinstance(value, dict):
        raise RecordError("not a JSON object")
    return value


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise RecordError(f"{key!r} is missing or not a string")
    return value


def _optional_text(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise RecordError(f"{key!r} is not a string")
    return value


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordError(f"{key!r} is missing or not an integer")
    return value


def parse_header(line: str) -> Header:
    try:
        obj = _object(line)
    except RecordError as exc:
        raise RecordError(f"not an {FORMAT} file: {exc}") from exc
    if obj.get("format") != FORMAT:
        raise RecordError(f"not an {FORMAT} file (its first line has no format {FORMAT!r})")
    if obj.get("version") != VERSION:
        raise RecordError(f"format version {obj.get('version')!r}; this SKR reads {VERSION}")
    return Header(model_id=_text(obj, "model_id"), dimensions=_int(obj, "dimensions"))


def parse_record(line: str, dimensions: int) -> Record:
    obj = _object(line)
    kind = obj.get("type")
    if kind == "collection":
        return CollectionRecord(name=_text(obj, "name"), tenant=_text(obj, "tenant"))
    if kind == "document":
        return _document(obj, dimensions)
    if kind == "end":
        return EndRecord(collections=_int(obj, "collections"), documents=_int(obj, "documents"))
    raise RecordError(f"unknown record type {kind!r}")


def _document(obj: dict[str, Any], dimensions: int) -> DocumentRecord:
    raw_chunks = obj.get("chunks")
    if not isinstance(raw_chunks, list):
        raise RecordError("'chunks' is missing or not a list")
    chunks = [_chunk(c) for c in raw_chunks]
    vectors = np.empty((len(raw_chunks), dimensions), dtype=np.float32)
    for i, chunk in enumerate(raw_chunks):
        vectors[i] = _embedding(chunk, dimensions)
    return DocumentRecord(
        collection=_text(obj, "collection"), tenant=_text(obj, "tenant"),
        url=_text(obj, "url"), final_url=_text(obj, "final_url"), title=_text(obj, "title"),
        content_hash=_text(obj, "content_hash"), etag=_optional_text(obj, "etag"),
        last_modified=_optional_text(obj, "last_modified"), chunks=chunks, vectors=vectors,
    )  # fmt: skip


def _chunk(obj: Any) -> ChunkDraft:
    if not isinstance(obj, dict):
        raise RecordError("a chunk is not a JSON object")
    try:
        kind = ChunkKind(_text(obj, "kind"))
    except ValueError as exc:
        raise RecordError(f"unknown chunk kind {obj.get('kind')!r}") from exc
    image = obj.get("image")
    if image is not None and not isinstance(image, dict):
        raise RecordError("a chunk's 'image' is not a JSON object")
    return ChunkDraft(
        ordinal=_int(obj, "ordinal"),
        text=_text(obj, "text"),
        heading_path=_text(obj, "heading_path"),
        token_count=_int(obj, "token_count"),
        kind=kind,
        image=None if image is None else ImageInfo(*(_text(image, f) for f in _IMAGE_FIELDS)),
    )


def _embedding(obj: dict[str, Any], dimensions: int) -> Vector:
    try:
        raw = base64.b64decode(_text(obj, "embedding"), validate=True)
    except binascii.Error as exc:
        raise RecordError("a chunk's 'embedding' is not base64") from exc
    if len(raw) != dimensions * _FLOAT32_LE.itemsize:
        raise RecordError(
            f"a chunk's embedding has {len(raw) // _FLOAT32_LE.itemsize} dimensions, "
            f"not {dimensions}"
        )
    vector = np.frombuffer(raw, dtype=_FLOAT32_LE).astype(np.float32)
    if not np.isfinite(vector).all():
        raise RecordError("a chunk's embedding holds numbers that are not finite")
    return vector
