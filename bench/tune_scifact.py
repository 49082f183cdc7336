"""Tune hybrid ranking on SciFact's *train* queries: index once, fetch each query's keyword
and vector candidates once, then score many fusion variants in Python in seconds.

    python bench/tune_scifact.py index     # ~20 min: the corpus through skr's text ingest
    python bench/tune_scifact.py fetch     # ~1 min: candidates of every train query
    python bench/tune_scifact.py tune      # a minute: fusion variants, nDCG@10 etc. on train
    python bench/tune_scifact.py refine    # seconds: around the best, and candidate depth
    python bench/tune_scifact.py keyword   # ~4 min: stop words and FTS5 column weights
    python bench/tune_scifact.py feedback  # ~1 min: vector pseudo-relevance feedback
    python bench/tune_scifact.py postgres  # ~2 min: PostgreSQL's keyword ranking (see there)

Only ``qrels/train.tsv`` is read here: the test queries are for ``skr eval`` alone.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
from rich.console import Console

from skr.domain.models import DEFAULT_TENANT, ScoredId
from skr.domain.query_terms import keyword_terms, query_terms
from skr.domain.ranking import DEFAULT_KEYWORD_WEIGHT, fuse_scores
from skr.entrypoints.cli.eval_commands import text_documents
from skr.services.evaluation import document_id_of, load_beir, mean_metrics
from skr.settings import CacheSettings, Settings
from skr.wiring.container import build_container

DATASET = ROOT.parent / "shared" / "data" / "scifact"
COLLECTION = "scifact"
DEPTH = 400
USER_CANDIDATES = Settings().search.candidates
K_VALUES = (10, 100)
console = Console(stderr=True, highlight=False, width=160)

Ranked = list[tuple[str, float]]  # chunk id, score; best first


def settings_for(data_dir: Path) -> Settings:
    return Settings(run_workers=False, data_dir=data_dir, cache=CacheSettings(ttl_seconds=0))


async def index(data_dir: Path) -> None:
    """The corpus into ``data_dir`` through the same ingest path as ``skr eval``."""
    documents = text_documents(load_beir(DATASET, "test"))
    async with build_container(settings_for(data_dir)) as container:
        collection = await container.adapters.backend.store.ensure_collection(
            COLLECTION, DEFAULT_TENANT
        )
        started = time.perf_counter()
        outcomes = await container.services.ingest.ingest_texts(
            documents, collection_id=collection.id
        )
        chunks = sum(o.chunks for o in outcomes)
        seconds = time.perf_counter() - started
        console.print(f"indexed {len(documents)} documents, {chunks} chunks in {seconds:.0f} s")


async def fetch(data_dir: Path) -> None:
    """Per train query: the store's keyword and vector candidates (``DEPTH`` each) and the
    query vector; and every chunk's document and embedding."""
    dataset = load_beir(DATASET, "train")
    async with build_container(settings_for(data_dir)) as container:
        store, search = container.adapters.backend.store, container.services.search
        collection = await store.get_collection(COLLECTION, DEFAULT_TENANT)
        runs: dict[str, dict[str, Ranked]] = {}
        vectors = []
        for query_id, text in dataset.queries.items():
            vector = await search.embed_query(text)
            vectors.append(vector)
            keyword = await store.keyword_search(collection.id, text, DEPTH, None)
            semantic = await store.vector_search(collection.id, vector, DEPTH, None)
            runs[query_id] = {"keyword": _pairs(keyword), "vector": _pairs(semantic)}
    parse = document_id_of(dataset.name)
    with _connect(data_dir) as conn:
        rows = conn.execute(
            "SELECT c.id, d.url FROM chunks c JOIN documents d ON d.id = c.document_id"
        )
        chunk_docs = {chunk: parse(url) for chunk, url in rows}
    (data_dir / "train-candidates.json").write_text(
        json.dumps({"runs": runs, "chunk_docs": chunk_docs, "query_ids": list(dataset.queries)})
    )
    np.save(data_dir / "train-query-vectors.npy", np.vstack(vectors))
    console.print(f"fetched candidates of {len(runs)} train queries")


def _pairs(items: Sequence[ScoredId]) -> Ranked:
    return [(item.chunk_id, item.score) for item in items]


def _connect(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{data_dir / 'skr.sqlite3'}?mode=ro", uri=True)


# fusion variants ---------------------------------------------------------------------


def rrf(lists: Sequence[Ranked], weights: Sequence[float], k: float) -> Ranked:
    scores: dict[str, float] = {}
    for ranked, weight in zip(lists, weights, strict=True):
        for rank, (item, _) in enumerate(ranked, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda p: -p[1])


def _normalised(ranked: Ranked, how: str) -> dict[str, float]:
    if not ranked:
        return {}
    values = np.array([s for _, s in ranked])
    if how == "minmax":
        low, high = values.min(), values.max()
        scaled = (values - low) / (high - low) if high > low else np.ones_like(values)
    elif how == "zscore":
        std = values.std()
        scaled = (values - values.mean()) / std if std > 0 else np.zeros_like(values)
    elif how == "max":
        scaled = values / values.max() if values.max() > 0 else values
    else:
        raise ValueError(how)
    return {item: float(v) for (item, _), v in zip(ranked, scaled, strict=True)}


def convex(
    lists: Sequence[Ranked], weights: Sequence[float], how: str | Sequence[str],
    missing: str = "floor",
) -> Ranked:  # fmt: skip
    """Weighted sum of per-list normalised scores; a missing item gets the list's floor
    (its lowest normalised score) or, ``missing="zero"``, nothing."""
    hows = [how] * len(lists) if isinstance(how, str) else how
    normed = [_normalised(ranked, h) for ranked, h in zip(lists, hows, strict=True)]
    floors = [min(n.values(), default=0.0) for n in normed]
    if missing == "zero":
        floors = [0.0 for _ in normed]
    items = set().union(*normed)
    scores = {
        item: sum(w * n.get(item, f) for n, w, f in zip(normed, weights, floors, strict=True))
        for item in items
    }
    return sorted(scores.items(), key=lambda p: -p[1])


def to_documents(ranked: Ranked, chunk_docs: dict[str, str | None]) -> Ranked:
    """One entry per document: its best chunk's score, in the order of best chunks."""
    best: dict[str, float] = {}
    for chunk, score in ranked:
        doc = chunk_docs.get(chunk)
        if doc is not None and doc not in best:
            best[doc] = score
    return list(best.items())


@dataclass
class Candidates:
    query_ids: list[str]
    keyword: dict[str, Ranked]
    vector: dict[str, Ranked]
    chunk_docs: dict[str, str | None]


def load_candidates(data_dir: Path) -> Candidates:
    data = json.loads((data_dir / "train-candidates.json").read_text())
    runs = data["runs"]
    return Candidates(
        data["query_ids"],
        {q: [tuple(p) for p in r["keyword"]] for q, r in runs.items()},  # type: ignore[misc]
        {q: [tuple(p) for p in r["vector"]] for q, r in runs.items()},  # type: ignore[misc]
        data["chunk_docs"],
    )


Fuser = Callable[[Ranked, Ranked], Ranked]


def score(
    cands: Candidates,
    qrels: dict[str, dict[str, int]],
    fuse: Fuser,
    *,
    depth: int,
    level: str = "chunk",
    keyword: dict[str, Ranked] | None = None,
) -> dict[str, float]:
    """Mean metrics of one variant: ``depth`` candidates of each list, fused at chunk level
    (then each document's best chunk) or at document level (each list collapsed first)."""
    keyword = keyword if keyword is not None else cands.keyword
    runs: dict[str, list[str]] = {}
    for q in cands.query_ids:
        kw, vec = keyword[q][:depth], cands.vector[q][:depth]
        if level == "document":
            kw, vec = to_documents(kw, cands.chunk_docs), to_documents(vec, cands.chunk_docs)
            fused = fuse(kw, vec)
            runs[q] = [doc for doc, _ in fused][:100]
        else:
            runs[q] = [doc for doc, _ in to_documents(fuse(kw, vec), cands.chunk_docs)][:100]
    return mean_metrics(runs, qrels, K_VALUES)


# keyword query variants (FTS5 directly, on the same index; stop words as shipped) ------


def keyword_variant(
    data_dir: Path, queries: dict[str, str], *, weights: tuple[float, float, float],
    stopwords: bool,
) -> dict[str, Ranked]:  # fmt: skip
    collection = _collection_id(data_dir)
    runs: dict[str, Ranked] = {}
    with _connect(data_dir) as conn:
        for q, text in queries.items():
            terms = keyword_terms(text) if stopwords else query_terms(text)
            if not terms:
                runs[q] = []
                continue
            match = " OR ".join(f'"{t}"' for t in terms)
            rows = conn.execute(
                "SELECT c.id, bm25(chunks_fts, ?, ?, ?) AS rank FROM chunks_fts "
                "JOIN chunks c ON c.seq = chunks_fts.rowid "
                "WHERE chunks_fts MATCH ? AND c.collection_id = ? ORDER BY rank LIMIT ?",
                (*weights, match, collection, DEPTH),
            ).fetchall()
            runs[q] = [(r[0], -float(r[1])) for r in rows]
    return runs


def keyword_cost(data_dir: Path, queries: dict[str, str], *, stopwords: bool) -> str:
    """What one FTS5 query for the users' 50 candidates costs: its time, and the rows
    it matched (each one scored by bm25 before the best 50 are kept)."""
    collection = _collection_id(data_dir)
    seconds: list[float] = []
    matched: list[int] = []
    with _connect(data_dir) as conn:
        for text in queries.values():
            terms = keyword_terms(text) if stopwords else query_terms(text)
            match = " OR ".join(f'"{t}"' for t in terms)
            started = time.perf_counter()
            conn.execute(
                "SELECT c.id, bm25(chunks_fts, 2.0, 1.5, 1.0) AS rank FROM chunks_fts "
                "JOIN chunks c ON c.seq = chunks_fts.rowid "
                "WHERE chunks_fts MATCH ? AND c.collection_id = ? ORDER BY rank LIMIT ?",
                (match, collection, USER_CANDIDATES),
            ).fetchall()
            seconds.append(time.perf_counter() - started)
            count = conn.execute(
                "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (match,)
            )
            matched.append(int(count.fetchone()[0]))
    p50, p95 = np.percentile(seconds, [50, 95]) * 1000
    return f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, median rows matched {int(np.median(matched))}"


def _collection_id(data_dir: Path) -> str:
    with _connect(data_dir) as conn:
        row = conn.execute("SELECT id FROM collections WHERE name = ?", (COLLECTION,)).fetchone()
    return str(row[0])


def tune(data_dir: Path) -> None:
    dataset = load_beir(DATASET, "train")
    cands = load_candidates(data_dir)
    qrels = {q: dataset.qrels[q] for q in cands.query_ids}
    results: list[tuple[str, dict[str, float]]] = []

    def report(name: str, metrics: dict[str, float]) -> None:
        results.append((name, metrics))
        console.print(
            f"{name:58s} nDCG@10 {metrics['nDCG@10']:.4f}  R@10 {metrics['Recall@10']:.4f}  "
            f"R@100 {metrics['Recall@100']:.4f}  MRR@10 {metrics['MRR@10']:.4f}"
        )

    only_kw: Fuser = lambda kw, vec: kw  # noqa: E731
    only_vec: Fuser = lambda kw, vec: vec  # noqa: E731
    report("keyword only (store)", score(cands, qrels, only_kw, depth=DEPTH))
    report("vector only (store)", score(cands, qrels, only_vec, depth=DEPTH))
    for depth in (50, 100, 200, 400):
        fused = score(cands, qrels, lambda a, b: rrf([a, b], [1, 1], 60), depth=depth)
        report(f"rrf k=60 1:1 depth {depth} (current default)", fused)
    for level, depth, k in itertools.product(
        ("chunk", "document"), (50, 400), (1, 5, 10, 20, 30, 60, 100)
    ):
        fused = score(
            cands, qrels, lambda a, b, k=k: rrf([a, b], [1, 1], k), depth=depth, level=level
        )
        report(f"rrf k={k} 1:1 depth {depth} {level}", fused)
    for level, wk in itertools.product(("chunk", "document"), (0.5, 0.7, 0.8, 1.2, 1.5, 2.0)):
        fused = score(
            cands, qrels, lambda a, b, wk=wk: rrf([a, b], [wk, 1], 60), depth=50, level=level
        )
        report(f"rrf k=60 {wk}:1 depth 50 {level}", fused)
    for how, level, depth, alpha in itertools.product(
        ("minmax", "zscore", "max"), ("chunk", "document"), (50, 400), (0.2, 0.3, 0.4, 0.5, 0.6)
    ):
        fused = score(
            cands, qrels, lambda a, b, al=alpha, h=how: convex([a, b], [al, 1 - al], h),
            depth=depth, level=level,
        )  # fmt: skip
        report(f"convex {how} alpha_kw={alpha} depth {depth} {level}", fused)
    report(
        "score fusion as shipped (fuse_scores 0.4/0.6, depth 50)",
        score(cands, qrels, shipped, depth=USER_CANDIDATES),
    )
    best = max(results, key=lambda r: r[1]["nDCG@10"])
    console.print(f"best on train: {best[0]} nDCG@10 {best[1]['nDCG@10']:.4f}")
    (data_dir / "train-results.json").write_text(json.dumps(results, indent=1))


def refine(data_dir: Path) -> None:
    """A finer look around the best of ``tune``, at the users' candidate depth."""
    dataset = load_beir(DATASET, "train")
    cands = load_candidates(data_dir)
    qrels = {q: dataset.qrels[q] for q in cands.query_ids}

    def report(name: str, metrics: dict[str, float]) -> None:
        console.print(
            f"{name:58s} nDCG@10 {metrics['nDCG@10']:.4f}  R@10 {metrics['Recall@10']:.4f}  "
            f"R@100 {metrics['Recall@100']:.4f}  MRR@10 {metrics['MRR@10']:.4f}"
        )

    for how, missing, alpha in itertools.product(
        ("max", ("max", "minmax"), ("max", "zscore")), ("floor", "zero"),
        (0.3, 0.35, 0.4, 0.45, 0.5),
    ):  # fmt: skip
        fused = score(
            cands, qrels, lambda a, b, al=alpha, h=how, m=missing: convex([a, b], [al, 1 - al], h, m),
            depth=50,
        )  # fmt: skip
        report(f"convex {how} missing={missing} alpha_kw={alpha} depth 50", fused)
    for depth in (20, 30, 50, 100, 200, 400):
        fused = score(cands, qrels, lambda a, b: convex([a, b], [0.4, 0.6], "max"), depth=depth)
        report(f"convex max alpha_kw=0.4 depth {depth}", fused)


def shipped(kw: Ranked, vec: Ranked) -> Ranked:
    """The default fusion as shipped: ``skr.domain.ranking.fuse_scores``, 0.4 / 0.6, with
    the users' 50 candidates."""
    fused = fuse_scores(
        [[ScoredId(*p) for p in kw], [ScoredId(*p) for p in vec]],
        [DEFAULT_KEYWORD_WEIGHT, 1 - DEFAULT_KEYWORD_WEIGHT],
        USER_CANDIDATES,
    )
    return [(f.chunk_id, f.score) for f in fused]


def tune_keyword(data_dir: Path) -> None:
    """Keyword query handling (stop words) and FTS5 column weights (title, heading, text),
    alone and fused as shipped. About 30 s a variant: FTS5 runs every query again."""
    dataset = load_beir(DATASET, "train")
    cands = load_candidates(data_dir)
    qrels = {q: dataset.qrels[q] for q in cands.query_ids}
    queries = {q: dataset.queries[q] for q in cands.query_ids}
    only_kw: Fuser = lambda kw, vec: kw  # noqa: E731
    for stop in (False, True):
        cost = keyword_cost(data_dir, queries, stopwords=stop)
        console.print(f"FTS5 query, stop words {'dropped' if stop else 'kept':7s}: {cost}")
    variants = [((2.0, 1.5, 1.0), False), ((2.0, 1.5, 1.0), True), ((1.0, 1.0, 1.0), True)]
    variants += [((3.0, 1.0, 1.0), True), ((1.5, 1.0, 1.0), True)]
    for weights, stop in variants:
        keyword = keyword_variant(data_dir, queries, weights=weights, stopwords=stop)
        alone = score(cands, qrels, only_kw, depth=DEPTH, keyword=keyword)
        fused = score(cands, qrels, shipped, depth=USER_CANDIDATES, keyword=keyword)
        console.print(
            f"bm25{weights} stop words {'dropped' if stop else 'kept':7s} "
            f"alone nDCG@10 {alone['nDCG@10']:.4f}  fused as shipped nDCG@10 {fused['nDCG@10']:.4f}"
        )


def tune_feedback(data_dir: Path) -> None:
    """Pseudo-relevance feedback on the vector side (Rocchio): the query vector plus
    ``beta`` times the mean of the first pass's best ``m`` chunks, searched again (exactly,
    over the stored embeddings), then fused as shipped."""
    dataset = load_beir(DATASET, "train")
    cands = load_candidates(data_dir)
    qrels = {q: dataset.qrels[q] for q in cands.query_ids}
    with _connect(data_dir) as conn:
        rows = conn.execute("SELECT id, embedding FROM chunks").fetchall()
    ids = [r[0] for r in rows]
    embeddings = np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
    position = {chunk: i for i, chunk in enumerate(ids)}
    query_vectors = np.load(data_dir / "train-query-vectors.npy")

    def nearest(vector: np.ndarray) -> Ranked:
        similarity = embeddings @ vector
        top = np.argsort(-similarity)[:USER_CANDIDATES]
        return [(ids[j], float(similarity[j])) for j in top]

    def with_vectors(vectors: dict[str, Ranked]) -> float:
        variant = Candidates(cands.query_ids, cands.keyword, vectors, cands.chunk_docs)
        return score(variant, qrels, shipped, depth=USER_CANDIDATES)["nDCG@10"]

    exact = {q: nearest(query_vectors[i]) for i, q in enumerate(cands.query_ids)}
    console.print(f"no feedback, exact vector search: nDCG@10 {with_vectors(exact):.4f}")
    for m, beta in itertools.product((3, 5, 10), (0.3, 0.5, 1.0)):
        fed: dict[str, Ranked] = {}
        for i, q in enumerate(cands.query_ids):
            first = shipped(cands.keyword[q][:USER_CANDIDATES], cands.vector[q][:USER_CANDIDATES])
            best = embeddings[[position[chunk] for chunk, _ in first[:m]]]
            vector = query_vectors[i] + beta * best.mean(axis=0)
            fed[q] = nearest(vector / np.linalg.norm(vector))
        console.print(f"feedback m={m} beta={beta}: nDCG@10 {with_vectors(fed):.4f}")


POSTGRES_RANKINGS = {
    "ts_rank_cd": "ts_rank_cd(c.tsv, q.query)",
    "ts_rank": "ts_rank(c.tsv, q.query)",
    "ts_rank, text : heading : title = 1 : 1.5 : 2": "ts_rank('{0.1, 0.5, 0.75, 1.0}', c.tsv, q.query)",
}


def tune_postgres(data_dir: Path, database_url: str) -> None:
    """PostgreSQL's keyword ranking on the train queries, alone and fused as shipped with
    the vector candidates of ``fetch``. The database holds the same chunks, copied without
    embedding again: ``SKR_DATA_DIR=DATA_DIR skr export F`` then
    ``SKR_DATABASE_URL=URL skr migrate`` and ``skr import F``."""
    import psycopg

    dataset = load_beir(DATASET, "train")
    cands = load_candidates(data_dir)
    qrels = {q: dataset.qrels[q] for q in cands.query_ids}
    parse = document_id_of(dataset.name)
    keyed = "SELECT c.id, d.url, c.ordinal FROM chunks c JOIN documents d ON d.id = c.document_id"
    with _connect(data_dir) as conn:
        lite = {chunk: f"{parse(url)}#{ordinal}" for chunk, url, ordinal in conn.execute(keyed)}
    vector = {q: [(lite[c], s) for c, s in cands.vector[q]] for q in cands.query_ids}
    chunk_docs: dict[str, str | None] = {key: key.split("#")[0] for key in lite.values()}
    with psycopg.connect(database_url) as pg:
        [(collection,)] = pg.execute("SELECT id FROM collections WHERE name = %s", (COLLECTION,))
        rows = pg.execute(f"{keyed} WHERE c.collection_id = %s", (collection,)).fetchall()
        ids = {chunk: f"{parse(url)}#{ordinal}" for chunk, url, ordinal in rows}
        for name, rank in POSTGRES_RANKINGS.items():
            statement = (
                f"SELECT c.id, {rank} AS rank FROM chunks c, "
                "websearch_to_tsquery('english', %s) AS q (query) "
                "WHERE c.tsv @@ q.query AND c.collection_id = %s ORDER BY rank DESC, c.seq LIMIT %s"
            )
            keyword: dict[str, Ranked] = {}
            seconds: list[float] = []
            for q in cands.query_ids:
                words = " OR ".join(keyword_terms(dataset.queries[q]))
                started = time.perf_counter()
                found = pg.execute(statement, (words, collection, USER_CANDIDATES)).fetchall()
                seconds.append(time.perf_counter() - started)
                keyword[q] = [(ids[c], float(r)) for c, r in found]
            variant = Candidates(cands.query_ids, keyword, vector, chunk_docs)
            alone = score(variant, qrels, lambda kw, vec: kw, depth=USER_CANDIDATES)
            fused = {
                alpha: score(
                    variant, qrels, lambda a, b, al=alpha: convex([a, b], [al, 1 - al], "max"),
                    depth=USER_CANDIDATES,
                )["nDCG@10"]
                for alpha in (0.3, 0.4, 0.5, 0.6)
            }  # fmt: skip
            p50, p95 = np.percentile(seconds, [50, 95]) * 1000
            console.print(
                f"{name:45s} alone nDCG@10 {alone['nDCG@10']:.4f}; fused nDCG@10 "
                + ", ".join(f"{a} {v:.4f}" for a, v in fused.items())
                + f"; query p50 {p50:.1f} ms, p95 {p95:.1f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "command", choices=["index", "fetch", "tune", "refine", "keyword", "feedback", "postgres"]
    )
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/scifact-skr"))
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/skr_scifact_tune"
    )
    args = parser.parse_args()
    if args.command == "index":
        asyncio.run(index(args.data_dir))
    elif args.command == "fetch":
        asyncio.run(fetch(args.data_dir))
    elif args.command == "tune":
        tune(args.data_dir)
    elif args.command == "refine":
        refine(args.data_dir)
    elif args.command == "keyword":
        tune_keyword(args.data_dir)
    elif args.command == "postgres":
        tune_postgres(args.data_dir, args.database_url)
    else:
        tune_feedback(args.data_dir)


if __name__ == "__main__":
    main()
