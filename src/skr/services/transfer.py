"""Moving a knowledge base between stores with its vectors, never re-embedding (export/import)."""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable, Generator, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import anyio.to_thread

from skr.domain.errors import DependencyError, InvalidInputError
from skr.ports.store import Store
from skr.services.transfer_format import (
    CollectionRecord,
    DocumentRecord,
    EndRecord,
    Header,
    RecordError,
    collection_line,
    document_line,
    end_line,
    header_line,
    parse_header,
    parse_record,
)

ProgressCallback = Callable[[int, int | None], None]
"""Called with the documents done so far and the total, when it is known."""

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class TransferCounts:
    collections: int
    documents: int
    chunks: int
    skipped: int = 0
    """Documents left out of an export: their vectors were made by another model."""


def _no_progress(done: int, total: int | None) -> None:
    return None


# export ------------------------------------------------------------------------------


async def export_knowledge_base(
    store: Store,
    path: Path,
    *,
    model_id: str,
    dimensions: int,
    on_progress: ProgressCallback = _no_progress,
) -> TransferCounts:
    """Write every collection of every tenant, with documents, chunks and vectors, to
    ``path`` (gzip when it ends in ``.gz``), a document at a time. The file appears only
    once it is complete; until then it is ``path`` + ``.partial``."""
    partial = path.with_name(path.name + ".partial")
    try:
        with _open_for_writing(partial, compressed=path.name.endswith(".gz")) as out:
            counts = await _write_records(store, out, model_id, dimensions, on_progress)
        partial.replace(path)
    except OSError as exc:
        raise InvalidInputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return counts


@contextmanager
def _open_for_writing(path: Path, *, compressed: bool) -> Iterator[TextIO]:
    # Plain blocking writes: a line at a time, small next to the store reads between them.
    if compressed:
        with gzip.open(path, "wt", encoding="utf-8", newline="\n") as text:
            yield text
    else:
        with path.open("w", encoding="utf-8", newline="\n") as text:
            yield text


async def _write_records(
    store: Store, out: TextIO, model_id: str, dimensions: int, on_progress: ProgressCallback
) -> TransferCounts:
    out.write(header_line(model_id, dimensions, datetime.now(UTC)))
    collections = await store.list_all_collections()
    for collection in collections:
        out.write(collection_line(collection))
    documents = chunks = skipped = 0
    for collection in collections:
        async for stored in store.export_documents(collection.id):
            if stored.model_id is not None and stored.model_id != model_id:
                skipped += 1
                continue
            _check_dimensions(stored.vectors.shape, dimensions, stored.document.url)
            out.write(document_line(stored, collection))
            documents += 1
            chunks += len(stored.chunks)
            on_progress(documents, None)
    out.write(end_line(len(collections), documents))
    return TransferCounts(len(collections), documents, chunks, skipped)


def _check_dimensions(shape: tuple[int, ...], dimensions: int, url: str) -> None:
    if shape[0] and (len(shape) != 2 or shape[1] != dimensions):
        raise DependencyError(f"the stored vectors of {url} do not have {dimensions} dimensions")


# import ------------------------------------------------------------------------------


async def import_knowledge_base(
    store: Store,
    path: Path,
    *,
    model_id: str,
    dimensions: int,
    on_progress: ProgressCallback = _no_progress,
) -> TransferCounts:
    """Read an export into ``store``: collections ensured, each document written in one
    transaction, replacing a stored document of the same URL. The whole file is checked
    first, so that a damaged or foreign file changes nothing."""
    total = await anyio.to_thread.run_sync(_check_file, path, model_id, dimensions)
    collection_ids: dict[tuple[str, str], str] = {}

    async def collection_id(name: str, tenant: str) -> str:
        if (name, tenant) not in collection_ids:
            collection = await store.ensure_collection(name, tenant)
            collection_ids[(name, tenant)] = collection.id
        return collection_ids[(name, tenant)]

    documents = chunks = 0
    with closing(_records(path, model_id, dimensions)) as records:
        for record in records:
            if isinstance(record, CollectionRecord):
                await collection_id(record.name, record.tenant)
                continue
            target = await collection_id(record.collection, record.tenant)
            await store.write_page(record.page_write(target, model_id))
            documents += 1
            chunks += len(record.chunks)
            on_progress(documents, total)
    return TransferCounts(len(collection_ids), documents, chunks)


def _check_file(path: Path, model_id: str, dimensions: int) -> int:
    """Read the whole file as the import will; the number of documents in it."""
    return sum(1 for r in _records(path, model_id, dimensions) if isinstance(r, DocumentRecord))


def _records(
    path: Path, model_id: str, dimensions: int
) -> Generator[CollectionRecord | DocumentRecord, None, None]:
    """The file's records after its header, each checked; ``InvalidInputError`` naming
    the line for anything wrong, a missing end record included."""
    end: EndRecord | None = None
    seen = {"collections": 0, "documents": 0}
    number = 0
    for number, line in _lines(path):
        try:
            if number == 1:
                _check_header(path, parse_header(line), model_id, dimensions)
                continue
            if not line.strip():
                continue
            if end is not None:
                raise RecordError("there is more after the end record")
            record = parse_record(line, dimensions)
            if isinstance(record, EndRecord):
                end = record
                _check_end(end, seen)
                continue
            seen["collections" if isinstance(record, CollectionRecord) else "documents"] += 1
        except RecordError as exc:
            raise InvalidInputError(f"{path.name}, line {number}: {exc}") from exc
        yield record
    if number == 0:
        raise InvalidInputError(f"{path.name} is empty: it is not an export")
    if end is None:
        raise InvalidInputError(f"{path.name} is cut short: it has no end record (truncated?)")


def _check_header(path: Path, header: Header, model_id: str, dimensions: int) -> None:
    if (header.model_id, header.dimensions) != (model_id, dimensions):
        raise InvalidInputError(
            f"{path.name} holds vectors of model {header.model_id!r} ({header.dimensions} "
            f"dimensions), but this store keeps vectors of {model_id!r} ({dimensions} "
            "dimensions); they cannot be mixed, and import does not re-embed"
        )


def _check_end(end: EndRecord, seen: dict[str, int]) -> None:
    if (end.collections, end.documents) != (seen["collections"], seen["documents"]):
        raise RecordError(
            f"the end record counts {end.collections} collections and {end.documents} "
            f"documents, the file holds {seen['collections']} and {seen['documents']}"
        )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines of a plain or gzip-compressed file, read errors made readable."""
    try:
        with path.open("rb") as raw:
            compressed = raw.read(len(_GZIP_MAGIC)) == _GZIP_MAGIC
            raw.seek(0)
            binary = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            with io.TextIOWrapper(binary, encoding="utf-8", newline="\n") as text:
                yield from enumerate(text, start=1)
    except FileNotFoundError as exc:
        raise InvalidInputError(f"there is no file {path}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path.name} is not an export: it is not UTF-8 text") from exc
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise InvalidInputError(f"{path.name} is damaged or cut short: {exc}") from exc
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from exc
