"""SQLite's keyword search ranks FTS5 matches first and filters by collection after;
past a bound on the matches it ranks, it filters them all in one join. Both ways agree."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from skr.adapters.sqlite.search_queries import fts_query, keyword_search, keyword_search_joined
from skr.domain.models import ChunkKind, ScoredId
from tests.fixtures.stores import open_sqlite, page

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_ranking_first_and_joining_first_find_the_same_chunks(tmp_path: Path) -> None:
    async with open_sqlite(tmp_path) as (store, database):
        crowd = await store.ensure_collection("crowd", "t")
        few = await store.ensure_collection("few", "t")
        loud = [f"zebra zebra zebra {n}" for n in range(40)]
        await store.write_page(page(crowd.id, "http://x.test/crowd", loud, list(range(40))))
        quiet = ["a zebra", "a zebra with words", "a zebra with a few more words"]  # no ties
        await store.write_page(page(few.id, "http://x.test/few", quiet, [50, 51, 52]))
        match = fts_query("zebra")
        assert match is not None

        def three_ways(kind: ChunkKind | None) -> list[list[ScoredId]]:
            def run(conn: sqlite3.Connection) -> list[list[ScoredId]]:
                return [
                    keyword_search(conn, few.id, match, 2, kind),
                    # ranking at most 8 matches cannot reach this collection's: the join
                    keyword_search(conn, few.id, match, 2, kind, ranked_max=8),
                    keyword_search_joined(conn, few.id, match, 2, kind),
                ]

            return database.read_sync(run)

        for kind in (None, ChunkKind.TEXT, ChunkKind.IMAGE):
            ranked_first, bounded, joined = three_ways(kind)
            assert ranked_first == bounded == joined
            assert len(joined) == (0 if kind is ChunkKind.IMAGE else 2)
        chunks = await store.get_chunks([s.chunk_id for s in three_ways(None)[0]])
        assert {c.collection_id for c in chunks} == {few.id}
