"""Export and import: SQLite → PostgreSQL → SQLite keeps documents, chunks, images and
vectors, and answers the same searches; damaged or foreign files are refused whole."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from skr.adapters.postgres.store import PostgresStore
from skr.domain.errors import InvalidInputError
from skr.domain.models import ChunkDraft, ChunkKind, HybridQuery, ImageInfo, PageWrite
from skr.ports.store import Store
from skr.services.transfer import export_knowledge_base, import_knowledge_base
from tests.fakes.fake_store import InMemoryStore
from tests.fixtures.stores import DIMENSIONS, MODEL_ID, fresh_postgres, open_sqlite

pytestmark = pytest.mark.anyio

_LETTERS = "bcdfghjklmnpqrtvwxz"  # no vowels, s or y: no two words stem alike
_FILLER = "carried over between stores"
_IMAGE = ImageInfo(
    src="http://docs.test/img/diagram.png",
    alt="architecture diagram",
    title="Diagram",
    caption="How the parts connect",
    surrounding_text="The picture below",
    ocr_text="API -> store",
)
_DOCS = 70  # more than one export batch


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def word(i: int, j: int) -> str:
    """A made-up word found in chunk ``j`` of page ``i`` only."""
    n = i * 2 + j
    return "qx" + "".join(_LETTERS[(n // len(_LETTERS) ** p) % len(_LETTERS)] for p in range(3))


def vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIMENSIONS).astype(np.float32)
    return v / np.linalg.norm(v)


def near(*seeds: int) -> np.ndarray:
    """A query vector with a clear order of nearest chunks: ``seeds`` first, in order."""
    v = np.sum([w * vector(s) for w, s in zip((1.0, 0.7, 0.5), seeds, strict=False)], axis=0)
    return np.asarray(v / np.linalg.norm(v), dtype=np.float32)


def page(collection_id: str, i: int, *, image: bool = False, **kw: Any) -> PageWrite:
    chunks = [ChunkDraft(j, f"{word(i, j)} {_FILLER}", f"Guide > Part {j}", 5) for j in range(2)]
    if image:
        chunks.append(ChunkDraft(2, _IMAGE.searchable_text(), "Guide", 9, ChunkKind.IMAGE, _IMAGE))
    return PageWrite(
        collection_id=collection_id,
        url=f"http://docs.test/p{i}",
        final_url=f"http://docs.test/final/p{i}",
        title=f"Page {i}",
        content_hash=f"hash-{i}",
        etag=kw.get("etag"),
        last_modified=kw.get("last_modified"),
        chunks=chunks,
        model_id=kw.get("model_id", MODEL_ID),
        vectors=(
            np.vstack([vector(i * 10 + j) for j in range(len(chunks))])
            if chunks
            else np.empty((0, DIMENSIONS), dtype=np.float32)
        ),
    )


async def fill(store: Store) -> None:
    docs = await store.ensure_collection("docs", "t1")
    for i in range(_DOCS):
        await store.write_page(page(docs.id, i, image=i == 7))
    await store.write_page(
        page(docs.id, 90, etag='"v1"', last_modified="Wed, 21 Oct 2015 07:28:00 GMT")
    )
    other = await store.ensure_collection("docs", "t2")
    for i in range(100, 103):
        await store.write_page(page(other.id, i))
    await store.ensure_collection("empty", "t1")


async def snapshot(store: Store) -> dict[tuple[str, str], dict[str, Any]]:
    """Everything stored, by (tenant, collection) and URL, ids left out."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for collection in await store.list_all_collections():
        documents: dict[str, Any] = {}
        async for stored in store.export_documents(collection.id):
            d = stored.document
            chunks = [
                (c.ordinal, c.kind, c.heading_path, c.text, c.token_count, c.title, c.image)
                for c in stored.chunks
            ]
            fields = (d.final_url, d.title, d.content_hash, d.etag, d.last_modified)
            counts = (d.chunk_count, d.image_count, stored.model_id)
            documents[d.url] = (fields, counts, chunks, stored.vectors)
        found[(collection.tenant, collection.name)] = documents
    return found


def assert_same(a: dict[tuple[str, str], dict[str, Any]], b: dict[tuple[str, str], Any]) -> None:
    assert a.keys() == b.keys()
    for key, documents in a.items():
        assert documents.keys() == b[key].keys(), key
        for url, (fields, counts, chunks, vectors) in documents.items():
            other = b[key][url]
            assert (fields, counts, chunks) == other[:3], url
            assert len(vectors) == len(other[3])
            if len(vectors):
                assert np.allclose(vectors, other[3], atol=1e-6), url


QUERIES = [  # text, vector, kind: keyword matches are unique, so backends rank alike
    (word(5, 0), near(101, 230, 340), None),
    (f"{word(12, 1)} quantum", near(401, 0, 660), None),
    ("quantum nothing matches", near(170, 171, 500), None),
    ("diagram", vector(72), ChunkKind.IMAGE),
    (word(60, 1), near(601, 611, 621), ChunkKind.TEXT),
]


async def search(store: Store, candidates: int) -> list[list[tuple[str, int]]]:
    docs = next(c for c in await store.list_all_collections() if c.tenant == "t1")
    results = []
    for text, query_vector, kind in QUERIES:
        query = HybridQuery(text, query_vector, 10, kind, candidates, (1.0, 1.0), 60)
        fused = await store.hybrid_search(docs.id, query)
        chunks = await store.get_chunks([f.chunk_id for f in fused])
        results.append([(c.url, c.ordinal) for c in chunks])
    return results


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_sqlite(tmp_path / "source") as (store, _):
        await fill(store)
        yield store


@pytest.fixture
async def postgres() -> AsyncIterator[Store]:
    async with fresh_postgres() as database:
        yield PostgresStore(database, model_id=MODEL_ID, dimensions=DIMENSIONS)


async def transfer(source: Store, target: Store, path: Path) -> None:
    exported = await export_knowledge_base(source, path, model_id=MODEL_ID, dimensions=DIMENSIONS)
    imported = await import_knowledge_base(target, path, model_id=MODEL_ID, dimensions=DIMENSIONS)
    assert (exported.collections, exported.documents) == (3, _DOCS + 4)
    assert (imported.collections, imported.documents) == (3, _DOCS + 4)
    assert exported.chunks == imported.chunks == 2 * (_DOCS + 4) + 1
    assert exported.skipped == 0


@pytest.mark.parametrize("name", ["kb.jsonl", "kb.jsonl.gz"])
async def test_sqlite_to_postgres_and_back(
    source: Store, postgres: Store, tmp_path: Path, name: str
) -> None:
    await transfer(source, postgres, tmp_path / name)
    expected = await snapshot(source)
    image_chunk = expected[("t1", "docs")]["http://docs.test/p7"][2][2]
    assert image_chunk[1] is ChunkKind.IMAGE and image_chunk[-1] == _IMAGE
    assert_same(expected, await snapshot(postgres))
    for candidates in (3, 20):
        assert await search(postgres, candidates) == await search(source, candidates)
    async with open_sqlite(tmp_path / "back") as (back, _):
        await transfer(postgres, back, tmp_path / f"again-{name}")
        assert_same(expected, await snapshot(back))
        for candidates in (3, 20):
            assert await search(back, candidates) == await search(source, candidates)


async def test_file_layout(source: Store, tmp_path: Path) -> None:
    path = tmp_path / "kb.jsonl.gz"
    await export_knowledge_base(source, path, model_id=MODEL_ID, dimensions=DIMENSIONS)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert not (tmp_path / "kb.jsonl.gz.partial").exists()
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    header = lines[0]
    assert header["format"] == "skr-export" and header["version"] == 1
    assert (header["model_id"], header["dimensions"]) == (MODEL_ID, DIMENSIONS)
    assert [r["type"] for r in lines[1:4]] == ["collection"] * 3
    assert lines[-1] == {"type": "end", "collections": 3, "documents": _DOCS + 4}
    with_image = next(r for r in lines if r.get("url", "").endswith("/p7"))
    image_chunk = with_image["chunks"][2]
    assert image_chunk["kind"] == "image" and image_chunk["image"]["src"] == _IMAGE.src
    assert image_chunk["image"]["ocr_text"] == _IMAGE.ocr_text
    assert len(image_chunk["embedding"]) == 4 * ((DIMENSIONS * 4 + 2) // 3)


async def test_unwritable_destination_is_refused(source: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot write"):
        await export_knowledge_base(
            source, tmp_path / "no-such-dir" / "kb.jsonl", model_id=MODEL_ID, dimensions=DIMENSIONS
        )


async def test_fake_store_round_trip(source: Store, tmp_path: Path) -> None:
    fake = InMemoryStore()
    await transfer(source, fake, tmp_path / "kb.jsonl")
    assert_same(await snapshot(source), await snapshot(fake))


async def test_documents_of_another_model_are_left_out(tmp_path: Path) -> None:
    async with open_sqlite(tmp_path / "mixed") as (store, _):
        docs = await store.ensure_collection("docs", "t1")
        await store.write_page(page(docs.id, 1))
        await store.write_page(page(docs.id, 2, model_id="an-older-model"))
        counts = await export_knowledge_base(
            store, tmp_path / "kb.jsonl", model_id=MODEL_ID, dimensions=DIMENSIONS
        )
    assert (counts.documents, counts.skipped) == (1, 1)


async def test_import_replaces_a_stored_url(source: Store, tmp_path: Path) -> None:
    path = tmp_path / "kb.jsonl"
    await export_knowledge_base(source, path, model_id=MODEL_ID, dimensions=DIMENSIONS)
    async with open_sqlite(tmp_path / "target") as (target, _):
        docs = await target.ensure_collection("docs", "t1")
        stale = page(docs.id, 5)
        await target.write_page(
            PageWrite(**{**_fields(stale), "title": "Stale", "content_hash": "old"})
        )
        await import_knowledge_base(target, path, model_id=MODEL_ID, dimensions=DIMENSIONS)
        assert_same(await snapshot(source), await snapshot(target))


def _fields(write: PageWrite) -> dict[str, Any]:
    return {name: getattr(write, name) for name in PageWrite.__dataclass_fields__}


async def _refused(path: Path, tmp_path: Path, match: str) -> None:
    async with open_sqlite(tmp_path / "refusing") as (target, _):
        with pytest.raises(InvalidInputError, match=match):
            await import_knowledge_base(target, path, model_id=MODEL_ID, dimensions=DIMENSIONS)
        assert await target.list_all_collections() == []  # nothing was written


@pytest.fixture
async def exported(source: Store, tmp_path: Path) -> list[str]:
    path = tmp_path / "good.jsonl"
    await export_knowledge_base(source, path, model_id=MODEL_ID, dimensions=DIMENSIONS)
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


async def test_another_model_is_refused(exported: list[str], tmp_path: Path) -> None:
    header = json.loads(exported[0])
    path = tmp_path / "other-model.jsonl"
    path.write_text(
        json.dumps({**header, "model_id": "other-model"}) + "\n" + "".join(exported[1:])
    )
    await _refused(path, tmp_path, "model 'other-model'.*cannot be mixed")
    path.write_text(json.dumps({**header, "dimensions": 768}) + "\n" + "".join(exported[1:]))
    await _refused(path, tmp_path, "768 dimensions")


async def test_truncated_files_are_refused(exported: list[str], tmp_path: Path) -> None:
    text = "".join(exported)
    cut = tmp_path / "cut.jsonl"
    cut.write_text(text[: len(text) // 2])
    await _refused(cut, tmp_path, r"cut\.jsonl, line \d+: not a JSON record")
    cut.write_text("".join(exported[:-1]))
    await _refused(cut, tmp_path, "cut short: it has no end record")
    squeezed = tmp_path / "cut.jsonl.gz"
    squeezed.write_bytes(gzip.compress(text.encode())[:-200])
    await _refused(squeezed, tmp_path, "damaged or cut short")
    dropped = tmp_path / "dropped.jsonl"
    dropped.write_text("".join(exported[:5] + exported[6:]))
    await _refused(dropped, tmp_path, "end record counts")


async def test_garbage_is_refused(exported: list[str], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(np.random.default_rng(1).bytes(5000))
    await _refused(garbage, tmp_path, "not UTF-8|not an skr-export file")
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\n")
    await _refused(notes, tmp_path, r"notes\.txt, line 1: not an skr-export file")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    await _refused(empty, tmp_path, "is empty")
    await _refused(tmp_path / "missing.jsonl", tmp_path, "there is no file")
    record = json.loads(exported[5])
    record["chunks"][0]["embedding"] = record["chunks"][0]["embedding"][:-8]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join([*exported[:5], json.dumps(record) + "\n", *exported[6:]]))
    await _refused(broken, tmp_path, r"line 6: a chunk's 'embedding' is not base64|dimensions")
