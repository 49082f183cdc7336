"""A tiny BEIR-layout dataset, written here, through text ingest, the search modes and
`evaluate` on fakes, with scores known in advance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skr.adapters.memory.cache import MemoryCache
from skr.domain.errors import InvalidInputError
from skr.domain.models import ChunkKind, Collection, ScoredId
from skr.services.ask import AskService
from skr.services.evaluation import (
    ANSWER_PASSAGES,
    RANKINGS,
    document_id_of,
    evaluate,
    evaluate_citations,
    load_beir,
    source_id,
)
from skr.services.ingest import IngestService, TextDocument
from skr.services.search import SearchService
from tests.fakes.fake_embedder import FakeEmbedder
from tests.fakes.fake_fetcher import DictFetcher
from tests.fakes.fake_store import InMemoryStore

pytestmark = pytest.mark.anyio

CORPUS = {
    "d1": ("Photosynthesis", "Chloroplasts turn sunlight into sugar inside green leaves."),
    "d2": (
        "Volcanoes",
        "\n\n".join(
            ["A volcano erupts when magma rises."]
            + [f"Volcano eruption {i} spills lava." for i in range(8)]
        ),
    ),
    "d3": ("Basalt", "Cooling lava forms basalt, a dark rock."),
    "d4": ("Tides", "The moon pulls the oceans and makes tides."),
    "d5": ("Spooky action", "Two particles can share one state however far apart they are."),
    "d6": ("Computing", "A quantum computer uses qubits."),
}
QUERIES = {
    "q1": "chloroplasts sunlight",  # these words are only in d1
    "q2": "volcano lava eruption",  # d2 (grade 2) has them all, d3 (grade 1) has lava
    "q3": "quantum entanglement",  # relevant d5 shares no word with it; d6 has quantum
    "q9": "a query without judgements",
}
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td3\t1\nq3\td5\t1\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def write_dataset(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w") as corpus:
        for doc_id, (title, text) in CORPUS.items():
            corpus.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (root / "queries.jsonl").open("w") as queries:
        for query_id, text in QUERIES.items():
            queries.write(json.dumps({"_id": query_id, "text": text, "metadata": {}}) + "\n")
    (root / "qrels" / "test.tsv").write_text(QRELS)
    return root


class RecordingStore(InMemoryStore):
    """Remembers how many chunks each keyword search asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.keyword_depths: list[int] = []

    async def keyword_search(
        self, collection_id: str, query: str, k: int, kind: ChunkKind | None
    ) -> list[ScoredId]:
        self.keyword_depths.append(k)
        return await super().keyword_search(collection_id, query, k, kind)


async def indexed(
    root: Path, cache: MemoryCache | None = None
) -> tuple[SearchService, Collection, FakeEmbedder, RecordingStore]:
    """The dataset's corpus ingested as texts; small chunks, so d2 has nine."""
    store, embedder = RecordingStore(), FakeEmbedder()
    cache = cache if cache is not None else MemoryCache(100)
    ingest = IngestService(
        fetcher=DictFetcher(), store=store, embedder=embedder, cache=cache, max_tokens=12
    )
    search = SearchService(
        store=store, embedder=embedder, cache=cache, candidates=10, rrf_k=60, cache_ttl_seconds=60
    )
    collection = await store.ensure_collection("eval", "t")
    dataset = load_beir(root)
    documents = [TextDocument(source_id("tiny", d.id), d.title, d.text) for d in dataset.corpus]
    await ingest.ingest_texts(documents, collection_id=collection.id)
    return search, collection, embedder, store


def test_loading_keeps_only_the_judged_queries(tmp_path: Path) -> None:
    dataset = load_beir(write_dataset(tmp_path / "tiny"), "test")
    assert dataset.name == "tiny"
    assert [d.id for d in dataset.corpus] == list(CORPUS)
    assert dataset.corpus[1].title == "Volcanoes"
    assert dataset.queries == {q: QUERIES[q] for q in ("q1", "q2", "q3")}
    assert dataset.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 1}, "q3": {"d5": 1}}
    limited = dataset.limited(queries=1, documents=2)
    assert list(limited.queries) == ["q1"] and list(limited.qrels) == ["q1"]
    assert [d.id for d in limited.corpus] == ["d1", "d2"]  # the relevant one first
    assert [d.id for d in dataset.limited(queries=None, documents=1).corpus] == ["d1"]


def test_a_directory_that_is_not_beir_is_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path / "tiny")
    with pytest.raises(InvalidInputError, match=r"train\.tsv is missing"):
        load_beir(tmp_path / "tiny", "train")
    (tmp_path / "tiny" / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    with pytest.raises(InvalidInputError, match="query-id"):
        load_beir(tmp_path / "tiny", "test")


def test_source_ids_map_back_to_document_ids() -> None:
    parse = document_id_of("scifact")
    assert source_id("scifact", "4983") == "beir://scifact/4983"
    assert parse("beir://scifact/4983") == "4983"
    assert parse(source_id("scifact", "a/b c")) == "a/b c"
    assert parse("beir://other/4983") is None and parse("https://example.com/") is None


async def test_keyword_mode_searches_words_only_and_modes_are_cached_apart(
    tmp_path: Path,
) -> None:
    search, collection, embedder, _ = await indexed(write_dataset(tmp_path / "tiny"))
    embedder.batches.clear()
    keyword = await search.search(collection, "quantum entanglement", 5, None, mode="keyword")
    assert [h.url for h in keyword] == ["beir://tiny/d6"]
    assert embedder.batches == []  # no query vector for a keyword search
    vector = await search.search(collection, "quantum entanglement", 5, None, mode="vector")
    assert len(vector) == 5 and len(embedder.batches) == 1
    hybrid = await search.search(collection, "quantum entanglement", 5, None)
    assert hybrid[0].url == "beir://tiny/d6" and len(hybrid) == 5


async def test_searches_ranked_differently_do_not_share_cached_results(tmp_path: Path) -> None:
    cache = MemoryCache(100)  # one cache, as processes share Redis
    search, collection, embedder, store = await indexed(write_dataset(tmp_path / "tiny"), cache)
    shipped = await search.search(collection, "volcano", 5, None)
    keyword_only = SearchService(
        store=store, embedder=embedder, cache=cache, candidates=10, rrf_k=60,
        cache_ttl_seconds=60, keyword_weight=1.0,
    )  # fmt: skip
    store.keyword_depths.clear()
    await keyword_only.search(collection, "volcano", 5, None)
    assert store.keyword_depths == [10]  # ranked afresh, not served the other's result
    store.keyword_depths.clear()
    assert await search.search(collection, "volcano", 5, None) == shipped
    assert store.keyword_depths == []  # its own result, from the cache


async def test_document_search_keeps_the_best_chunk_of_each_document(tmp_path: Path) -> None:
    search, collection, _, store = await indexed(write_dataset(tmp_path / "tiny"))
    chunks = await search.search(collection, "volcano lava eruption", 10, None, mode="keyword")
    assert [h.url for h in chunks[:8]] == ["beir://tiny/d2"] * 8
    store.keyword_depths.clear()
    documents = await search.search_documents(
        collection, "volcano lava eruption", 2, mode="keyword"
    )
    assert [h.url for h in documents] == ["beir://tiny/d2", "beir://tiny/d3"]
    assert documents[0].id == chunks[0].id  # its best chunk
    assert store.keyword_depths == [8, 16]  # 4 x k chunks were all d2's: it read deeper


async def test_evaluate_scores_every_ranking_with_known_keyword_scores(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "tiny")
    search, collection, _, store = await indexed(root)
    dataset = load_beir(root)
    done: list[int] = []
    store.keyword_depths.clear()
    report = await evaluate(
        search, collection, dataset.queries, dataset.qrels, (10, 100),
        document_id=document_id_of("tiny"), on_progress=done.append,
    )  # fmt: skip
    # 3 queries x 3 rankings x 2 cutoffs: each cutoff k is a search for k documents (4 k
    # chunks), keyword and hybrid alike, so hybrid fuses what a user's search fuses
    assert report.queries == 3 and done == list(range(1, 19))
    assert store.keyword_depths == ([40] * 3 + [400] * 3) * 2
    assert all(r.latency_k == 10 for r in report.rankings)
    assert [r.mode for r in report.rankings] == list(RANKINGS)
    keyword = report.rankings[0]
    # q1 and q2 are perfect (q2 with graded relevance), q3 finds only d6: 0
    for name in ("nDCG@10", "Recall@10", "Recall@100", "MRR@10"):
        assert keyword.metrics[name] == pytest.approx(2 / 3), name
    for ranking in report.rankings:
        assert set(ranking.metrics) >= {"nDCG@10", "Recall@10", "Recall@100", "MRR@10"}
        assert all(0.0 <= v <= 1.0 for v in ranking.metrics.values())
        assert ranking.total_seconds >= 0 and 0 <= ranking.p50_ms <= ranking.p95_ms
    vector = report.rankings[1]
    assert vector.metrics["Recall@100"] == pytest.approx(1.0)  # all six are ranked
    as_dict = report.as_dict()
    assert set(as_dict["rankings"]) == set(RANKINGS)  # type: ignore[arg-type]


async def test_citation_rate_counts_answers_that_cite_a_relevant_document(
    tmp_path: Path,
) -> None:
    search, collection, _, _ = await indexed(write_dataset(tmp_path / "tiny"))
    ask = AskService(search=search, generator=None)
    queries = {"q1": QUERIES["q1"], "q2": QUERIES["q2"], "q9": QUERIES["q9"]}
    # q1's answer quotes d1; q2's quotes only the volcano chunks, and is judged against
    # d1 here; q9 has no judgement, so it is not asked
    qrels = {"q1": {"d1": 1}, "q2": {"d1": 1, "d2": 0}}
    done: list[int] = []
    result = await evaluate_citations(
        ask, collection, queries, qrels, document_id=document_id_of("tiny"),
        on_progress=done.append,
    )  # fmt: skip
    assert (result.queries, result.relevant, result.rate) == (2, 1, 0.5)
    assert done == [1, 2] and 0 <= result.p50_ms <= result.p95_ms
    answer = await ask.ask(collection, QUERIES["q2"], ANSWER_PASSAGES)
    assert answer.citations and {c.url for c in answer.citations} == {"beir://tiny/d2"}
    as_dict = result.as_dict()
    assert as_dict["rate"] == 0.5 and as_dict["passages"] == ANSWER_PASSAGES
