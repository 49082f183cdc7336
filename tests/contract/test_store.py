"""The Store contract: every implementation behaves the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from skr.domain.errors import ConflictError, InvalidInputError, NotFoundError
from skr.domain.models import ChunkKind, Fusion, HybridQuery, ImageInfo
from skr.ports.store import Store
from tests.fixtures.kinds import class_id
from tests.fixtures.stores import DIMENSIONS, MODEL_ID, STORE_KINDS, make_store, page, unit

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=STORE_KINDS, ids=class_id)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with make_store(request.param, tmp_path) as built:
        yield built  # type: ignore[misc]


async def test_collections_are_per_tenant_and_unique(store: Store) -> None:
    a = await store.ensure_collection("docs", "t1")
    assert (await store.ensure_collection("docs", "t1")).id == a.id
    with pytest.raises(ConflictError):
        await store.create_collection("docs", "t1")
    other = await store.create_collection("docs", "t2")
    assert other.id != a.id
    assert [c.name for c in await store.list_collections("t1")] == ["docs"]
    with pytest.raises(NotFoundError):
        await store.get_collection("nope", "t1")


async def test_written_page_is_found_by_both_searches(store: Store) -> None:
    c = await store.ensure_collection("docs", "t")
    doc = await store.write_page(
        page(c.id, "http://x.test/a", ["Blueprints group views", "Templates render HTML"], [1, 2])
    )
    assert doc.chunk_count == 2
    assert (await store.find_document(c.id, "http://x.test/a")) == doc
    keyword = await store.keyword_search(c.id, "blueprints", 10, None)
    assert len(keyword) == 1
    [chunk] = await store.get_chunks([keyword[0].chunk_id])
    assert chunk.text == "Blueprints group views"
    assert chunk.url == "http://x.test/a"
    assert chunk.document_id == doc.id
    nearest = await store.vector_search(c.id, unit(2), 1, None)
    [near_chunk] = await store.get_chunks([nearest[0].chunk_id])
    assert near_chunk.text == "Templates render HTML"
    assert nearest[0].score == pytest.approx(1.0, abs=1e-3)


async def test_rewriting_a_page_replaces_its_chunks(store: Store) -> None:
    c = await store.ensure_collection("docs", "t")
    first = await store.write_page(page(c.id, "http://x.test/a", ["old words here"], [1]))
    old_ids = [s.chunk_id for s in await store.keyword_search(c.id, "old", 10, None)]
    second = await store.write_page(
        page(c.id, "http://x.test/a", ["new words here"], [2], content_hash="h2")
    )
    assert second.id == first.id
    assert second.content_hash == "h2"
    assert await store.keyword_search(c.id, "old", 10, None) == []
    assert await store.get_chunks(old_ids) == []
    nearest = await store.vector_search(c.id, unit(1), 5, None)
    texts = [ch.text for ch in await store.get_chunks([n.chunk_id for n in nearest])]
    assert texts == ["new words here"]


async def test_searches_stay_inside_their_collection_and_kind(store: Store) -> None:
    a = await store.ensure_collection("a", "t")
    b = await store.ensure_collection("b", "t")
    image = ImageInfo(src="http://x.test/logo.png", alt="flask logo", caption="The logo")
    await store.write_page(page(a.id, "http://x.test/1", ["flask text"], [1], images=[image]))
    await store.write_page(page(b.id, "http://x.test/2", ["flask other"], [1]))
    in_a = await store.get_chunks(
        [s.chunk_id for s in await store.keyword_search(a.id, "flask", 10, None)]
    )
    assert {ch.collection_id for ch in in_a} == {a.id}
    assert {ch.kind for ch in in_a} == {ChunkKind.TEXT, ChunkKind.IMAGE}
    images = await store.keyword_search(a.id, "flask", 10, ChunkKind.IMAGE)
    [img] = await store.get_chunks([images[0].chunk_id])
    assert img.image is not None and img.image.src == "http://x.test/logo.png"
    vec = await store.vector_search(b.id, unit(1), 10, None)
    assert {ch.collection_id for ch in await store.get_chunks([v.chunk_id for v in vec])} == {b.id}
    only_text = await store.vector_search(a.id, unit(1000), 10, ChunkKind.TEXT)
    kinds = {ch.kind for ch in await store.get_chunks([v.chunk_id for v in only_text])}
    assert kinds == {ChunkKind.TEXT}


def toward(cosine: float) -> np.ndarray:
    """A unit vector whose cosine with ``toward(1.0)`` (the first axis) is ``cosine``."""
    v = np.zeros(DIMENSIONS, dtype=np.float32)
    v[0], v[1] = cosine, np.sqrt(1 - cosine**2)
    return v


async def fusion_page(store: Store) -> tuple[str, dict[str, str]]:
    """Chunks a, b, c at cosines 1, 0.8 and 0.5 from the first axis; only c says zebra."""
    c = await store.ensure_collection("docs", "t")
    texts = ["apples grow on trees", "pears ripen slowly", "a zebra crossing"]
    drafted = page(c.id, "http://x.test/fusion", texts, [1, 2, 3])
    vectors = np.vstack([toward(1.0), toward(0.8), toward(0.5)])
    document = await store.write_page(replace(drafted, vectors=vectors))
    stored = await store.stored_page(document.id)
    assert stored is not None
    return c.id, {ch.id: "abc"[ch.ordinal] for ch in stored.chunks}


def hybrid(candidates: int, k: int = 3, fusion: Fusion = Fusion.SCORE) -> HybridQuery:
    return HybridQuery("zebra", toward(1.0), k, None, candidates, (0.4, 0.6), 60, fusion)


async def test_score_fusion_by_hand(store: Store) -> None:
    collection_id, names = await fusion_page(store)
    # keyword: c alone (1); vector: a 1, b 0.8, c 0.5; neither ranking full, floors 0
    fused = await store.hybrid_search(collection_id, hybrid(candidates=10))
    assert [names[f.chunk_id] for f in fused] == ["c", "a", "b"]
    expected = [0.4 * 1 + 0.6 * 0.5, 0.6 * 1, 0.6 * 0.8]
    assert [f.score for f in fused] == pytest.approx(expected, abs=1e-5)
    # two candidates: the vector ranking (a, b) is full, so c gets its floor, b's 0.8
    fused = await store.hybrid_search(collection_id, hybrid(candidates=2))
    assert [names[f.chunk_id] for f in fused] == ["c", "a", "b"]
    expected = [0.4 * 1 + 0.6 * 0.8, 0.6 * 1, 0.6 * 0.8]
    assert [f.score for f in fused] == pytest.approx(expected, abs=1e-5)
    assert [names[f.chunk_id] for f in await store.hybrid_search(collection_id, hybrid(10, 2))] == [
        "c", "a",
    ]  # fmt: skip


async def test_reciprocal_rank_fusion_by_hand(store: Store) -> None:
    collection_id, names = await fusion_page(store)
    fused = await store.hybrid_search(collection_id, hybrid(10, fusion=Fusion.RRF))
    # keyword ranks c first; vector ranks a, b, c
    assert [names[f.chunk_id] for f in fused] == ["c", "a", "b"]
    expected = [0.4 / 61 + 0.6 / 63, 0.6 / 61, 0.6 / 62]
    assert [f.score for f in fused] == pytest.approx(expected)


async def test_hybrid_search_chunks_are_the_hybrid_ranking_with_its_chunks(store: Store) -> None:
    collection_id, _ = await fusion_page(store)
    image = ImageInfo(src="http://x.test/zebra.png", alt="a zebra", caption="Zebra crossing")
    await store.write_page(
        page(collection_id, "http://x.test/z", ["zebra facts"], [7], images=[image])
    )
    queries = [
        hybrid(10),
        hybrid(2),
        hybrid(10, 2),
        hybrid(10, fusion=Fusion.RRF),
        HybridQuery("zebra", toward(1.0), 5, ChunkKind.IMAGE, 10, (0.4, 0.6), 60),
        HybridQuery("on the", toward(0.5), 3, None, 10, (0.4, 0.6), 60),
    ]
    for query in queries:
        ranked = await store.hybrid_search(collection_id, query)
        assert ranked, query
        with_chunks = await store.hybrid_search_chunks(collection_id, query)
        assert [(c.id, score) for c, score in with_chunks] == [
            (r.chunk_id, r.score) for r in ranked
        ]
        assert [c for c, _ in with_chunks] == await store.get_chunks([r.chunk_id for r in ranked])
    [(found, _)] = await store.hybrid_search_chunks(collection_id, queries[4])
    assert found.image is not None and found.image.src == "http://x.test/zebra.png"
    empty = await store.ensure_collection("empty", "t")
    assert await store.hybrid_search_chunks(empty.id, hybrid(10)) == []


async def test_stop_words_match_nothing(store: Store) -> None:
    c = await store.ensure_collection("docs", "t")
    texts = ["the cat sat on the mat", "a zebra crossing"]
    await store.write_page(page(c.id, "http://x.test/a", texts, [1, 2]))
    found = await store.keyword_search(c.id, "the zebra", 10, None)
    assert [ch.text for ch in await store.get_chunks([f.chunk_id for f in found])] == [
        "a zebra crossing"
    ]
    assert await store.keyword_search(c.id, "on the", 10, None) == []
    # hybrid search still answers a query of stop words, by its vectors
    query = HybridQuery("on the", unit(2), 5, None, 10, (0.4, 0.6), 60)
    [first, *_] = await store.hybrid_search(c.id, query)
    assert [ch.text for ch in await store.get_chunks([first.chunk_id])] == ["a zebra crossing"]


async def test_a_rare_query_word_outweighs_a_common_one(store: Store) -> None:
    # BM25's inverse document frequency: "gamma" is in one chunk, "alpha" in five; the
    # chunk with the rare word comes first although it was written last
    c = await store.ensure_collection("docs", "t")
    texts = [f"alpha notes number {n}" for n in range(5)]
    await store.write_page(page(c.id, "http://x.test/a", texts, [1, 2, 3, 4, 5]))
    await store.write_page(page(c.id, "http://x.test/b", ["gamma notes"], [6]))
    found = await store.keyword_search(c.id, "alpha gamma", 10, None)
    [first] = await store.get_chunks([found[0].chunk_id])
    assert first.text == "gamma notes"
    assert len(found) == 6
    assert found[0].score > found[1].score


async def test_keyword_search_finds_a_collections_matches_behind_better_ones_elsewhere(
    store: Store,
) -> None:
    # forty chunks of another collection, and of another kind in this one, outrank
    # this collection's two text chunks for "zebra": both are still found, best first
    crowd = await store.ensure_collection("crowd", "t")
    few = await store.ensure_collection("few", "t")
    loud = [f"zebra zebra zebra {n}" for n in range(40)]
    await store.write_page(page(crowd.id, "http://x.test/crowd", loud, list(range(40))))
    image = ImageInfo(src="http://x.test/z.png", alt="zebra zebra zebra", caption="zebra zebra")
    quiet = ["a zebra, then a zebra among other words", "one zebra and a great many more words"]
    await store.write_page(page(few.id, "http://x.test/few", quiet, [50, 51], images=[image]))
    found = await store.keyword_search(few.id, "zebra", 2, ChunkKind.TEXT)
    texts = [ch.text for ch in await store.get_chunks([f.chunk_id for f in found])]
    assert texts == quiet
    assert found[0].score > found[1].score
    assert len(await store.keyword_search(few.id, "zebra", 10, None)) == 3


async def test_keyword_search_survives_hostile_queries(store: Store) -> None:
    c = await store.ensure_collection("docs", "t")
    await store.write_page(page(c.id, "http://x.test/a", ["quotes and NEAR operators"], [1]))
    for query in ['"', "NEAR(", "a OR", "*", "-", "::", "😀", 'x" OR 1=1 --']:
        await store.keyword_search(c.id, query, 5, None)
    assert await store.keyword_search(c.id, "", 5, None) == []


async def test_documents_page_with_cursor(store: Store) -> None:
    c = await store.ensure_collection("docs", "t")
    for i in range(5):
        await store.write_page(page(c.id, f"http://x.test/{i}", [f"text {i}"], [i]))
    seen: list[str] = []
    cursor = None
    while True:
        docs, cursor = await store.list_documents(c.id, 2, cursor)
        seen.extend(d.url for d in docs)
        if cursor is None:
            break
    assert seen == [f"http://x.test/{i}" for i in range(5)]


async def test_bad_cursor_is_invalid_input(store: Store) -> None:
    c = await store.ensure_collection("docs", "t")
    with pytest.raises(InvalidInputError):
        await store.list_documents(c.id, 2, "not-a-cursor")


async def test_delete_removes_everything_and_respects_tenants(store: Store) -> None:
    c = await store.ensure_collection("docs", "t")
    doc = await store.write_page(page(c.id, "http://x.test/a", ["gone soon"], [3]))
    with pytest.raises(NotFoundError):
        await store.get_document(doc.id, "someone-else")
    with pytest.raises(NotFoundError):
        await store.delete_document(doc.id, "someone-else")
    await store.delete_document(doc.id, "t")
    with pytest.raises(NotFoundError):
        await store.get_document(doc.id, "t")
    assert await store.keyword_search(c.id, "gone", 10, None) == []
    assert await store.vector_search(c.id, unit(3), 10, None) == []
    with pytest.raises(NotFoundError):
        await store.delete_document(doc.id, "t")


async def test_mark_fetched_keeps_content(store: Store) -> None:
    c = await store.ensure_collection("docs", "t")
    doc = await store.write_page(page(c.id, "http://x.test/a", ["kept"], [3]))
    await store.mark_fetched(doc.id, '"etag-2"', None)
    again = await store.find_document(c.id, "http://x.test/a")
    assert again is not None
    assert again.etag == '"etag-2"'
    assert again.content_hash == doc.content_hash
    assert again.fetched_at >= doc.fetched_at


async def test_a_page_without_chunks_can_be_written(store: Store) -> None:
    c = await store.ensure_collection("docs", "t")
    doc = await store.write_page(page(c.id, "http://x.test/empty", [], []))
    assert doc.chunk_count == 0 and doc.image_count == 0
    assert (await store.find_document(c.id, "http://x.test/empty")) is not None


async def test_stored_page_gives_back_what_was_written(store: Store) -> None:
    c = await store.ensure_collection("docs", "t")
    image = ImageInfo(
        src="http://x.test/logo.png",
        alt="flask logo",
        title="Logo",
        caption="The logo",
        surrounding_text="Above the fold",
        ocr_text="FLASK",
    )
    written = page(c.id, "http://x.test/a", ["first part", "second part"], [1, 2], images=[image])
    doc = await store.write_page(written)
    stored = await store.stored_page(doc.id)
    assert stored is not None
    assert stored.document == doc
    assert stored.model_id == MODEL_ID
    assert [ch.ordinal for ch in stored.chunks] == [0, 1, 2]
    assert [ch.text for ch in stored.chunks] == [d.text for d in written.chunks]
    assert [ch.kind for ch in stored.chunks] == [ChunkKind.TEXT, ChunkKind.TEXT, ChunkKind.IMAGE]
    assert [ch.image for ch in stored.chunks] == [None, None, image]
    assert {ch.document_id for ch in stored.chunks} == {doc.id}
    assert {ch.url for ch in stored.chunks} == {"http://x.test/a"}
    assert stored.vectors.shape == (3, DIMENSIONS)
    assert np.allclose(stored.vectors, written.vectors, atol=1e-6)
    by_search = await store.get_chunks([ch.id for ch in stored.chunks])
    assert by_search == stored.chunks


async def test_stored_page_of_an_unknown_document_is_none(store: Store) -> None:
    c = await store.ensure_collection("docs", "t")
    await store.write_page(page(c.id, "http://x.test/a", ["some text"], [1]))
    assert await store.stored_page("no-such-document") is None


async def test_stored_page_follows_rewrites_and_deletes(store: Store) -> None:
    c = await store.ensure_collection("docs", "t")
    other = await store.write_page(page(c.id, "http://x.test/b", ["other page"], [9]))
    first = await store.write_page(page(c.id, "http://x.test/a", ["old one", "old two"], [1, 2]))
    rewritten = page(
        c.id, "http://x.test/a", ["new one", "new two", "new three"], [3, 4, 5], content_hash="h2"
    )
    second = await store.write_page(rewritten)
    stored = await store.stored_page(first.id)
    assert stored is not None
    assert stored.document.id == second.id == first.id
    assert stored.document.content_hash == "h2"
    assert [ch.text for ch in stored.chunks] == ["new one", "new two", "new three"]
    assert [ch.ordinal for ch in stored.chunks] == [0, 1, 2]
    assert np.allclose(stored.vectors, rewritten.vectors, atol=1e-6)
    await store.delete_document(first.id, "t")
    assert await store.stored_page(first.id) is None
    kept = await store.stored_page(other.id)
    assert kept is not None and [ch.text for ch in kept.chunks] == ["other page"]


async def test_stored_page_without_chunks(store: Store) -> None:
    c = await store.ensure_collection("docs", "t")
    doc = await store.write_page(page(c.id, "http://x.test/empty", [], []))
    stored = await store.stored_page(doc.id)
    assert stored is not None
    assert stored.document == doc
    assert stored.chunks == [] and stored.vectors.shape[0] == 0
    assert stored.model_id is None
