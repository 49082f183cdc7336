"""Retrieval quality on a BEIR-layout dataset: loading, metrics, and a run of every ranking."""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np

from skr.domain.errors import InvalidInputError
from skr.domain.models import Collection
from skr.services.search import MAX_QUERY_CHARS, SearchMode, SearchService

RANKINGS: tuple[SearchMode, ...] = ("keyword", "vector", "hybrid")
DEFAULT_K_VALUES = (10, 100)
HEADLINE_METRICS = ("nDCG@10", "Recall@10", "Recall@100", "MRR@10")

Qrels = dict[str, dict[str, int]]
"""Query id → document id → graded relevance (0 or less: not relevant)."""


@dataclass(frozen=True, slots=True)
class BeirDocument:
    id: str
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class BeirDataset:
    """A corpus, and the queries of one split that have judgements, with those judgements."""

    name: str
    corpus: list[BeirDocument]
    queries: dict[str, str]
    qrels: Qrels

    def limited(self, *, queries: int | None, documents: int | None) -> BeirDataset:
        """The first ``queries`` queries, and ``documents`` documents: those relevant to the
        kept queries first, then the others in corpus order (for quick runs)."""
        kept = dict(list(self.queries.items())[:queries]) if queries is not None else self.queries
        corpus = self.corpus
        if documents is not None:
            wanted = {d for q in kept for d, r in self.qrels[q].items() if r > 0}
            relevant = [d for d in corpus if d.id in wanted]
            corpus = (relevant + [d for d in corpus if d.id not in wanted])[:documents]
        return BeirDataset(self.name, corpus, kept, {q: self.qrels[q] for q in kept})


@dataclass(frozen=True, slots=True)
class RankingResult:
    """One ranking's mean metrics over the queries, and how long its searches took."""

    mode: SearchMode
    metrics: dict[str, float]
    total_seconds: float
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True, slots=True)
class EvalReport:
    queries: int
    rankings: list[RankingResult]

    def as_dict(self) -> dict[str, object]:
        return {
            "queries": self.queries,
            "rankings": {
                r.mode: {
                    "metrics": r.metrics,
                    "seconds": r.total_seconds,
                    "p50_ms": r.p50_ms,
                    "p95_ms": r.p95_ms,
                }
                for r in self.rankings
            },
        }


def source_id(dataset: str, document_id: str) -> str:
    """The URL a BEIR document is stored under, e.g. ``beir://scifact/4983``."""
    return f"beir://{quote(dataset, safe='')}/{quote(document_id, safe='')}"


def document_id_of(dataset: str) -> Callable[[str], str | None]:
    """The inverse of :func:`source_id` for one dataset: None for any other URL."""
    prefix = source_id(dataset, "")

    def parse(url: str) -> str | None:
        return unquote(url[len(prefix) :]) if url.startswith(prefix) else None

    return parse


def _jsonl(path: Path) -> Iterator[dict[str, object]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{path}:{number} is not JSON: {exc.msg}") from exc
            if not isinstance(record, dict) or "_id" not in record:
                raise InvalidInputError(f"{path}:{number} is not an object with an _id")
            yield record


def load_qrels(path: Path) -> Qrels:
    """``query-id``, ``corpus-id``, ``score`` per line, tab-separated, after a header."""
    qrels: Qrels = {}
    with path.open(encoding="utf-8", newline="") as lines:
        rows = csv.reader(lines, delimiter="\t")
        header = next(rows, None)
        if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise InvalidInputError(f"{path} does not start with query-id, corpus-id, score")
        for number, row in enumerate(rows, start=2):
            if not row:
                continue
            try:
                query_id, document_id, score = row[0], row[1], int(row[2])
            except (IndexError, ValueError) as exc:
                raise InvalidInputError(f"{path}:{number} is not a qrels line") from exc
            qrels.setdefault(query_id, {})[document_id] = score
    return qrels


def load_beir(directory: Path, split: str = "test") -> BeirDataset:
    """``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` of ``directory``;
    only the queries judged in that split are kept."""
    paths = [directory / "corpus.jsonl", directory / "queries.jsonl"]
    paths.append(directory / "qrels" / f"{split}.tsv")
    for path in paths:
        if not path.is_file():
            raise InvalidInputError(f"{path} is missing: not a BEIR-layout dataset")
    qrels = load_qrels(paths[2])
    corpus = [
        BeirDocument(str(r["_id"]), str(r.get("title") or ""), str(r.get("text") or ""))
        for r in _jsonl(paths[0])
    ]
    queries = {str(r["_id"]): str(r.get("text") or "") for r in _jsonl(paths[1])}
    judged = {q: text for q, text in queries.items() if q in qrels}
    return BeirDataset(directory.resolve().name, corpus, judged, qrels)


def ndcg_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """nDCG@k as trec_eval computes it: gain = graded relevance, discount log2(rank + 1),
    the ideal ranking taken from the judgements; 0 when nothing is relevant."""
    dcg = sum(
        max(relevance.get(doc, 0), 0) / math.log2(rank + 1)
        for rank, doc in enumerate(ranked[:k], start=1)
    )
    ideal = sorted((r for r in relevance.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(rank + 1) for rank, r in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top ``k``; 0 when nothing is relevant."""
    relevant = {doc for doc, r in relevance.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """1 / rank of the first relevant document in the top ``k``, else 0."""
    for rank, doc in enumerate(ranked[:k], start=1):
        if relevance.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


_METRICS: dict[str, Callable[[Sequence[str], Mapping[str, int], int], float]] = {
    "nDCG": ndcg_at_k,
    "Recall": recall_at_k,
    "MRR": mrr_at_k,
}


def mean_metrics(
    runs: Mapping[str, Sequence[str]], qrels: Qrels, k_values: Sequence[int]
) -> dict[str, float]:
    """Every metric at every ``k``, averaged over the judged queries (a judged query with
    no run scores 0); named like ``nDCG@10``."""
    judged = [q for q in qrels if qrels[q]]
    means: dict[str, float] = {}
    for name, metric in _METRICS.items():
        for k in k_values:
            scores = [metric(runs.get(q, ()), qrels[q], k) for q in judged]
            means[f"{name}@{k}"] = sum(scores) / len(scores) if scores else 0.0
    return means


async def evaluate(
    search: SearchService,
    collection: Collection,
    queries: Mapping[str, str],
    qrels: Qrels,
    k_values: Sequence[int] = DEFAULT_K_VALUES,
    *,
    document_id: Callable[[str], str | None],
    rankings: Sequence[SearchMode] = RANKINGS,
    on_progress: Callable[[int], None] | None = None,
) -> EvalReport:
    """Run every judged query through ``search`` once per ranking, best documents first,
    deep enough for the largest ``k``; ``document_id`` maps a hit's URL to the dataset's
    document id; ``on_progress`` hears how many searches are done. Queries longer than the
    search allows are cut to fit."""
    judged = {q: text for q, text in queries.items() if qrels.get(q)}
    depth = max(k_values)
    results: list[RankingResult] = []
    for mode in rankings:
        runs: dict[str, list[str]] = {}
        seconds: list[float] = []
        for query_id, text in judged.items():
            started = time.perf_counter()
            hits = await search.search_documents(
                collection, text[:MAX_QUERY_CHARS], depth, mode=mode
            )
            seconds.append(time.perf_counter() - started)
            ids = (document_id(hit.url) for hit in hits)
            runs[query_id] = [doc for doc in ids if doc is not None]
            if on_progress is not None:
                on_progress(len(results) * len(judged) + len(runs))
        metrics = mean_metrics(runs, {q: qrels[q] for q in judged}, k_values)
        results.append(_ranking_result(mode, metrics, seconds))
    return EvalReport(queries=len(judged), rankings=results)


def _ranking_result(
    mode: SearchMode, metrics: dict[str, float], seconds: list[float]
) -> RankingResult:
    p50, p95 = np.percentile(seconds, [50, 95]) * 1000 if seconds else (0.0, 0.0)
    return RankingResult(mode, metrics, sum(seconds), float(p50), float(p95))
