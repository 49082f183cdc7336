"""The HNSW index is derived from SQLite: saved, reloaded, and rebuilt when missing or stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.stores import open_sqlite, page, unit

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _nearest_texts(store: object, collection_id: str, seed: int) -> list[str]:
    hits = await store.vector_search(collection_id, unit(seed), 3, None)  # type: ignore[attr-defined]
    return [c.text for c in await store.get_chunks([h.chunk_id for h in hits])]  # type: ignore[attr-defined]


async def test_saved_index_is_reloaded(tmp_path: Path) -> None:
    async with open_sqlite(tmp_path) as (store, _):
        c = await store.ensure_collection("docs", "t")
        await store.write_page(page(c.id, "http://x.test/a", ["alpha", "beta"], [1, 2]))
        await store.save_indexes()
    files = list((tmp_path / "ann").iterdir())
    assert any(f.suffix == ".hnsw" for f in files)
    async with open_sqlite(tmp_path) as (store, _):
        assert (await _nearest_texts(store, c.id, 2))[0] == "beta"


async def test_missing_index_is_rebuilt(tmp_path: Path) -> None:
    async with open_sqlite(tmp_path) as (store, _):
        c = await store.ensure_collection("docs", "t")
        await store.write_page(page(c.id, "http://x.test/a", ["alpha", "beta"], [1, 2]))
        await store.save_indexes()
    for f in (tmp_path / "ann").iterdir():
        f.unlink()
    async with open_sqlite(tmp_path) as (store, _):
        assert (await _nearest_texts(store, c.id, 1))[0] == "alpha"


async def test_stale_index_after_a_crash_is_rebuilt(tmp_path: Path) -> None:
    """A write committed to SQLite after the last index save (a crash before the next
    save) must be searchable after restart, and a replaced chunk must be gone."""
    async with open_sqlite(tmp_path) as (store, _):
        c = await store.ensure_collection("docs", "t")
        await store.write_page(page(c.id, "http://x.test/a", ["alpha"], [1]))
        await store.save_indexes()
        # committed, never saved to the index file: as if the process died here
        await store.write_page(page(c.id, "http://x.test/a", ["gamma"], [3], content_hash="h2"))
        await store.write_page(page(c.id, "http://x.test/b", ["delta"], [4]))
    async with open_sqlite(tmp_path) as (store, _):
        assert (await _nearest_texts(store, c.id, 3))[0] == "gamma"
        assert (await _nearest_texts(store, c.id, 4))[0] == "delta"
        assert "alpha" not in await _nearest_texts(store, c.id, 1)


async def test_corrupt_index_file_is_rebuilt(tmp_path: Path) -> None:
    async with open_sqlite(tmp_path) as (store, _):
        c = await store.ensure_collection("docs", "t")
        await store.write_page(page(c.id, "http://x.test/a", ["alpha", "beta"], [1, 2]))
        await store.save_indexes()
    for f in (tmp_path / "ann").glob("*.hnsw"):
        f.write_bytes(b"garbage")
    async with open_sqlite(tmp_path) as (store, _):
        assert (await _nearest_texts(store, c.id, 2))[0] == "beta"
