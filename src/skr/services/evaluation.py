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
from skr.services.ask import AskService
from skr.services.search import MAX_QUERY_CHARS, SearchMode, SearchService

RANKINGS: tuple[SearchMode, ...] = ("keyword", "vector", "hybrid")
DEFAULT_K_VALUES = (10, 100)
HEADLINE_METRICS = ("nDCG@10", "Recall@10", "Recall@100", "MRR@10")
ANSWER_PASSAGES = 5
"""Passages an evaluated answer is written from: as many as an ask gets by default."""

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
    """One ranking's mean metrics over the queries, how long all its searches took, and
    the latency of a search for ``latency_k`` documents."""

    mode: SearchMode
    metrics: dict[str, float]
    total_seconds: float
    p50_ms: float
    p95_ms: float
    latency_k: int


@dataclass(frozen=True, slots=True)
class CitationResult:
    """How many judged queries got an answer citing at least one relevant document."""

    queries: int
    relevant: int
    p50_ms: float
    p95_ms: float

    @property
    def rate(self) -> float:
        return self.relevant / self.queries if self.queries else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "queries": self.queries,
            "relevant": self.relevant,
            "rate": self.rate,
            "passages": ANSWER_PASSAGES,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
        }


@dataclass(frozen=True, slots=True)
class EvalReport:
    queries: int
    rankings: list[RankingResult]
    citations: CitationResult | None = None

    def as_dict(self) -> dict[str, object]:
        report: dict[str, object] = {
            "queries": self.queries,
            "rankings": {
                r.mode: {
                    "metrics": r.metrics,
                    "seconds": r.total_seconds,
                    "p50_ms": r.p50_ms,
                    "p95_ms": r.p95_ms,
                    "latency_k": r.latency_k,
                }
                for r in self.rankings
            },
        }
        if self.citations is not None:
            report["answer_citations"] = self.citations.as_dict()
        return report


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
    """Run every judged query through ``search`` for each ranking and each ``k``: the
    metrics at cutoff ``k`` come from a search for ``k`` documents, exactly what a user
    asking for ``k`` gets (so hybrid fuses as many candidates as theirs does), and the
    latency from the searches for the smallest ``k``. ``document_id`` maps a hit's URL to
    the dataset's document id; ``on_progress`` hears how many searches are done. Queries
    longer than the search allows are cut to fit."""
    judged = {q: text for q, text in queries.items() if qrels.get(q)}
    judgements = {q: qrels[q] for q in judged}
    cutoffs = sorted(set(k_values))
    results: list[RankingResult] = []
    done = 0
    for mode in rankings:
        metrics: dict[str, float] = {}
        seconds: dict[int, list[float]] = {k: [] for k in cutoffs}
        for k in cutoffs:
            runs: dict[str, list[str]] = {}
            for query_id, text in judged.items():
                started = time.perf_counter()
                hits = await search.search_documents(
                    collection, text[:MAX_QUERY_CHARS], k, mode=mode
                )
                seconds[k].append(time.perf_counter() - started)
                ids = (document_id(hit.url) for hit in hits)
                runs[query_id] = [doc for doc in ids if doc is not None]
                done += 1
                if on_progress is not None:
                    on_progress(done)
            metrics.update(mean_metrics(runs, judgements, [k]))
        p50, p95 = _percentiles_ms(seconds[cutoffs[0]])
        total = sum(sum(s) for s in seconds.values())
        results.append(RankingResult(mode, metrics, total, p50, p95, cutoffs[0]))
    return EvalReport(queries=len(judged), rankings=results)


def _percentiles_ms(seconds: Sequence[float]) -> tuple[float, float]:
    if not seconds:
        return 0.0, 0.0
    p50, p95 = np.percentile(seconds, [50, 95]) * 1000
    return float(p50), float(p95)


async def evaluate_citations(
    ask: AskService,
    collection: Collection,
    queries: Mapping[str, str],
    qrels: Qrels,
    *,
    document_id: Callable[[str], str | None],
    on_progress: Callable[[int], None] | None = None,
) -> CitationResult:
    """Ask every judged query (``ANSWER_PASSAGES`` passages) and count the answers with at
    least one citation of a relevant document; ``on_progress`` hears how many are done."""
    judged = {q: text for q, text in queries.items() if qrels.get(q)}
    relevant = 0
    seconds: list[float] = []
    for done, (query_id, text) in enumerate(judged.items(), start=1):
        started = time.perf_counter()
        answer = await ask.ask(collection, text[:MAX_QUERY_CHARS], ANSWER_PASSAGES)
        seconds.append(time.perf_counter() - started)
        cited = {document_id(c.url) for c in answer.citations}
        if any(qrels[query_id].get(doc, 0) > 0 for doc in cited if doc is not None):
            relevant += 1
        if on_progress is not None:
            on_progress(done)
    p50, p95 = _percentiles_ms(seconds)
    return CitationResult(len(judged), relevant, p50, p95)
