"""PostgreSQL-only promises: hybrid equals fused searches, atomic writes, filtered HNSW."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from urllib.parse import quote

import numpy as np
import pytest

from skr.adapters.postgres.database import PostgresDatabase
from skr.adapters.postgres.store import PostgresStore
from skr.domain.errors import DependencyError, InvalidInputError
from skr.domain.models import ChunkKind, Fusion, HybridQuery, ImageInfo
from skr.domain.ranking import fuse
from tests.fixtures.stores import DIMENSIONS, MODEL_ID, POSTGRES_URL, fresh_postgres, page, unit

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def postgres_store() -> AsyncIterator[tuple[PostgresStore, PostgresDatabase]]:
    async with fresh_postgres() as database:
        yield PostgresStore(database, model_id=MODEL_ID, dimensions=DIMENSIONS), database


async def _count(database: PostgresDatabase, query: str, *params: object) -> int:
    async with database.connection() as conn:
        cursor = await conn.execute(query, params)
        row = await cursor.fetchone()
    assert row is not None
    return int(next(iter(row.values())))


WORDS = ["flask", "blueprint", "template", "route", "view", "request", "session", "cookie"]


async def _fill_for_hybrid(store: PostgresStore) -> str:
    """Pages whose chunks share words and repeat texts (so ranks tie), with images."""
    c = await store.ensure_collection("docs", "t")
    rng = np.random.default_rng(7)
    for p in range(6):
        texts = [" ".join(rng.choice(WORDS, size=4)) for _ in range(5)]
        texts.append("flask route")  # the same text on every page: equal keyword ranks
        images = [ImageInfo(src=f"http://x.test/{p}.png", alt=f"{WORDS[p]} diagram")]
        seeds = [p * 10 + i for i in range(len(texts))]
        await store.write_page(page(c.id, f"http://x.test/{p}", texts, seeds, images=images))
    return c.id


@pytest.mark.parametrize("fusion", list(Fusion))
@pytest.mark.parametrize("kind", [None, ChunkKind.TEXT, ChunkKind.IMAGE])
async def test_hybrid_equals_fusing_the_two_searches(
    kind: ChunkKind | None, fusion: Fusion
) -> None:
    async with postgres_store() as (store, _):
        collection_id = await _fill_for_hybrid(store)
        cases = [
            ("flask route", unit(3), 5, 8, (1.0, 1.0), 60),
            ("blueprint cookie session", unit(21), 10, 20, (0.3, 0.7), 60),
            ("template", unit(1002), 3, 4, (1.0, 1.0), 1),
            ("nothing matches this", unit(44), 5, 10, (0.5, 0.5), 10),
            ('"NEAR( * - :: 😀 x" OR 1=1 --', unit(5), 5, 10, (1.0, 2.0), 60),
            ("flask", unit(12), 50, 50, (1.0, 1.0), 60),
        ]
        for text, vector, k, candidates, weights, rrf_k in cases:
            query = HybridQuery(text, vector, k, kind, candidates, weights, rrf_k, fusion)
            keyword = await store.keyword_search(collection_id, text, candidates, kind)
            semantic = await store.vector_search(collection_id, vector, candidates, kind)
            expected = fuse(query, keyword, semantic)
            got = await store.hybrid_search(collection_id, query)
            assert [s.chunk_id for s in got] == [s.chunk_id for s in expected], text
            assert [s.score for s in got] == pytest.approx([s.score for s in expected])


async def test_hybrid_search_stays_inside_its_collection() -> None:
    async with postgres_store() as (store, _):
        a = await store.ensure_collection("a", "t")
        b = await store.ensure_collection("b", "t")
        await store.write_page(page(a.id, "http://x.test/a", ["flask in a"], [1]))
        await store.write_page(page(b.id, "http://x.test/b", ["flask in b"], [1]))
        query = HybridQuery("flask", unit(1), 10, None, 10, (1.0, 1.0), 60)
        hits = await store.hybrid_search(a.id, query)
        chunks = await store.get_chunks([h.chunk_id for h in hits])
        assert [c.text for c in chunks] == ["flask in a"]


async def test_a_failing_page_write_leaves_the_old_version_intact() -> None:
    async with postgres_store() as (store, database):
        async with database.connection() as conn:
            # a constraint only this test's schema has: the second new chunk fails mid-write
            await conn.execute("ALTER TABLE chunks ADD CONSTRAINT no_boom CHECK (text <> 'boom')")
        c = await store.ensure_collection("docs", "t")
        before = await store.write_page(
            page(c.id, "http://x.test/a", ["old one", "old two"], [1, 2])
        )
        fresh = page(c.id, "http://x.test/a", ["fresh words", "boom"], [3, 4], content_hash="h2")
        with pytest.raises(DependencyError):
            await store.write_page(fresh)
        assert await store.find_document(c.id, "http://x.test/a") == before
        assert await store.keyword_search(c.id, "fresh", 10, None) == []
        old = await store.get_chunks(
            [s.chunk_id for s in await store.keyword_search(c.id, "old", 10, None)]
        )
        assert sorted(ch.text for ch in old) == ["old one", "old two"]
        nearest = await store.vector_search(c.id, unit(2), 1, None)
        assert [ch.text for ch in await store.get_chunks([nearest[0].chunk_id])] == ["old two"]
        assert await _count(database, "SELECT count(*) FROM chunks") == 2
        with pytest.raises(DependencyError):  # a new URL leaves no document behind
            await store.write_page(page(c.id, "http://x.test/b", ["boom"], [5]))
        assert await store.find_document(c.id, "http://x.test/b") is None


async def test_vectors_of_the_wrong_shape_are_refused_before_any_write() -> None:
    async with postgres_store() as (store, database):
        c = await store.ensure_collection("docs", "t")
        before = await store.write_page(page(c.id, "http://x.test/a", ["kept"], [1]))
        short = page(c.id, "http://x.test/a", ["lost"], [2])
        bad_dims = replace(short, vectors=np.ones((1, 5), np.float32))
        not_finite = replace(short, vectors=np.full((1, DIMENSIONS), np.nan, np.float32))
        too_few = replace(short, vectors=np.empty((0, DIMENSIONS), np.float32))
        for bad in (bad_dims, not_finite, too_few):
            with pytest.raises(InvalidInputError):
                await store.write_page(bad)
        assert await store.find_document(c.id, "http://x.test/a") == before
        assert await _count(database, "SELECT count(*) FROM chunks") == 1
        with pytest.raises(InvalidInputError):
            await store.vector_search(c.id, np.ones(5, np.float32), 3, None)


async def test_nul_characters_are_dropped_not_fatal() -> None:
    async with postgres_store() as (store, _):
        c = await store.ensure_collection("docs", "t")
        await store.write_page(page(c.id, "http://x.test/a", ["null\x00byte words"], [1]))
        [hit] = await store.keyword_search(c.id, "words", 5, None)
        [chunk] = await store.get_chunks([hit.chunk_id])
        assert chunk.text == "nullbyte words"


@asynccontextmanager
async def _hnsw_only_store() -> AsyncIterator[tuple[PostgresStore, PostgresDatabase]]:
    """A store whose connections cannot avoid the HNSW index: no btree on the collection,
    sequential scans priced out. Small filtered queries would otherwise be planned exactly."""
    async with fresh_postgres() as base:
        async with base.connection() as conn:
            await conn.execute("DROP INDEX chunks_by_collection")
        options = quote(f"-c search_path={base.schema},public -c enable_seqscan=off")
        database = PostgresDatabase(f"{POSTGRES_URL}?options={options}", max_size=2)
        await database.open()
        try:
            yield PostgresStore(database, model_id=MODEL_ID, dimensions=DIMENSIONS), database
        finally:
            await database.close()


async def test_filtered_vector_search_finds_k_rows_among_many_others() -> None:
    rng = np.random.default_rng(11)
    target = unit(99)
    async with _hnsw_only_store() as (store, database):
        crowd = await store.ensure_collection("crowd", "t")
        few = await store.ensure_collection("few", "t")
        for p in range(20):  # 2000 rows, all nearer to the query than any row of "few"
            noise = rng.standard_normal((100, DIMENSIONS)).astype(np.float32) * 0.02
            near = target + noise
            write = page(crowd.id, f"http://x.test/crowd/{p}", ["crowd"] * 100, [])
            vectors = near / np.linalg.norm(near, axis=1, keepdims=True)
            await store.write_page(replace(write, vectors=vectors))
        await store.write_page(
            page(few.id, "http://x.test/few", [f"few {i}" for i in range(5)], list(range(5)))
        )
        async with database.connection() as conn:
            await conn.execute("ANALYZE chunks")
            plan = await conn.execute(
                "EXPLAIN SELECT id FROM chunks WHERE collection_id = %s "
                "ORDER BY embedding <=> %s LIMIT 5",
                (few.id, target),
            )
            assert "chunks_embedding" in str(await plan.fetchall())
            async with conn.transaction():  # without the iterative scan: too few rows
                await conn.execute("SET LOCAL hnsw.iterative_scan = off")
                plain = await conn.execute(
                    "SELECT id FROM chunks WHERE collection_id = %s "
                    "ORDER BY embedding <=> %s LIMIT 5",
                    (few.id, target),
                )
                assert len(await plain.fetchall()) < 5
        hits = await store.vector_search(few.id, target, 5, None)
        assert len(hits) == 5
        chunks = await store.get_chunks([h.chunk_id for h in hits])
        assert {ch.collection_id for ch in chunks} == {few.id}
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        hybrid = await store.hybrid_search(
            few.id, HybridQuery("nothing", target, 5, None, 5, (1.0, 1.0), 60)
        )
        assert [h.chunk_id for h in hybrid] == [h.chunk_id for h in hits]
