"""`skr export` from an embedded data dir, then `skr import` into a PostgreSQL database of
its own, as a user runs them; failures end with a message and exit code 1, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import psycopg
import pytest
from psycopg import sql

from skr.adapters.onnx_embedder import DIMENSIONS, MODEL_ID
from skr.adapters.sqlite.database import SQLiteDatabase
from skr.adapters.sqlite.store import SQLiteStore
from skr.domain.models import ChunkDraft, ChunkKind, ImageInfo, PageWrite
from tests.e2e.servers import free_port
from tests.fixtures.stores import POSTGRES_URL

pytestmark = pytest.mark.slow

_IMAGE = ImageInfo(src="http://site.test/img/flow.png", alt="request flow", caption="Flow")


def vectors(seed: int, n: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIMENSIONS)).astype(np.float32)
    return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float32)


def page(collection_id: str, i: int) -> PageWrite:
    chunks = [ChunkDraft(0, f"Section {i} of the guide", "Guide", 5)]
    if i == 0:
        chunks.append(ChunkDraft(1, _IMAGE.searchable_text(), "Guide", 3, ChunkKind.IMAGE, _IMAGE))
    return PageWrite(
        collection_id=collection_id, url=f"http://site.test/p{i}", final_url=f"http://site.test/p{i}",
        title=f"Page {i}", content_hash=f"h{i}", etag=None, last_modified=None, chunks=chunks,
        model_id=MODEL_ID, vectors=vectors(i, len(chunks)),
    )  # fmt: skip


async def prepare_data_dir(data_dir: Path) -> None:
    """An embedded knowledge base as `skr serve` leaves it: three pages, one image."""
    database = SQLiteDatabase(data_dir / "skr.sqlite3")
    database.open()
    try:
        store = SQLiteStore(database, data_dir / "ann", model_id=MODEL_ID, dimensions=DIMENSIONS)
        await store.load_indexes()
        docs = await store.ensure_collection("docs", "default")
        for i in range(3):
            await store.write_page(page(docs.id, i))
        await store.save_indexes()
    finally:
        database.close()


def skr(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skr", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr


@pytest.fixture
def database_url() -> Iterator[str]:
    """A database of its own for this test, dropped afterwards."""
    name = f"skr_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_export_from_sqlite_then_import_into_postgres(tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "data"
    anyio.run(prepare_data_dir, data_dir)
    file = tmp_path / "kb.jsonl.gz"

    exported = skr("export", str(file), SKR_DATA_DIR=str(data_dir))
    assert exported.returncode == 0, exported.stderr
    assert "exported 3 documents (4 chunks) in 1 collection" in exported.stdout
    assert file.read_bytes()[:2] == b"\x1f\x8b"

    postgres = {"SKR_DATABASE_URL": database_url, "SKR_DATA_DIR": str(tmp_path / "unused")}
    assert_clean_failure(skr("import", str(file), **postgres), "run `skr migrate`")
    migrated = skr("migrate", **postgres)
    assert migrated.returncode == 0, migrated.stderr
    imported = skr("import", str(file), **postgres)
    assert imported.returncode == 0, imported.stderr
    assert "imported 3 documents (4 chunks) in 1 collection" in imported.stdout

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT d.url, d.title, c.ordinal, c.kind, c.model_id, c.embedding::text, i.alt "
            "FROM documents d JOIN collections k ON k.id = d.collection_id "
            "JOIN chunks c ON c.document_id = d.id LEFT JOIN images i ON i.chunk_id = c.id "
            "WHERE k.name = 'docs' AND k.tenant = 'default' ORDER BY d.url, c.ordinal"
        ).fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("http://site.test/p0", "Page 0", 0, "text"),
        ("http://site.test/p0", "Page 0", 1, "image"),
        ("http://site.test/p1", "Page 1", 0, "text"),
        ("http://site.test/p2", "Page 2", 0, "text"),
    ]
    assert {r[4] for r in rows} == {MODEL_ID}
    assert rows[1][6] == _IMAGE.alt
    stored = np.array([float(x) for x in rows[0][5].strip("[]").split(",")], dtype=np.float32)
    assert np.allclose(stored, vectors(0, 2)[0])


def test_failures_are_reported_without_a_traceback(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not an export\n")
    data = {"SKR_DATA_DIR": str(tmp_path / "data")}
    assert_clean_failure(skr("export", str(tmp_path / "out.jsonl"), **data), "no knowledge base")
    assert_clean_failure(skr("import", str(garbage), **data), "not an skr-export file")
    assert_clean_failure(skr("import", str(tmp_path / "missing.jsonl"), **data), "no file")
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    assert_clean_failure(
        skr("import", str(garbage), SKR_DATABASE_URL=closed, **data), "PostgreSQL is unreachable"
    )
