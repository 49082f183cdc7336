"""Rank fusion: combine keyword and vector rankings into one.

Two fusions, both weighted, both ordering ties the same way (the keyword ranking's items
first, in its order, then the vector-only items in theirs), which every Store's
``hybrid_search`` reproduces exactly:

- score fusion (the default): each ranking's scores are divided by its best score, so
  its best item counts 1 (a negative score counts 0, and so does every item of a ranking
  whose best score is not positive); an item missing from a ranking gets that ranking's
  lowest normalised score when the ranking is full (``candidates`` items long: the item may
  score just below its last one), else 0 (the ranking holds every match). The fused score
  is the weighted sum.
- reciprocal-rank fusion: each ranking adds ``weight / (rrf_k + rank)``.

Score fusion was chosen on SciFact's train queries (docs/benchmarks.md, "Retrieval quality
on SciFact").
"""

from __future__ import annotations

from collections.abc import Sequence

from skr.domain.models import Fusion, HybridQuery, ScoredId

DEFAULT_KEYWORD_WEIGHT = 0.4
"""The keyword ranking's share in hybrid search; the vector ranking gets the rest."""


def fuse_rankings(
    rankings: Sequence[Sequence[ScoredId]], weights: Sequence[float], rrf_k: int
) -> list[ScoredId]:
    """Weighted reciprocal-rank fusion: each list adds ``weight / (rrf_k + rank)``."""
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item.chunk_id] = scores.get(item.chunk_id, 0.0) + weight / (rrf_k + rank)
    return _ordered(scores)


def fuse_scores(
    rankings: Sequence[Sequence[ScoredId]], weights: Sequence[float], candidates: int
) -> list[ScoredId]:
    """Weighted sum of normalised scores (see the module's docstring); a ranking is full
    when it holds ``candidates`` items."""
    normalised = [normalised_scores(ranking) for ranking in rankings]
    floors = [
        min(scores.values()) if scores and len(ranking) >= candidates else 0.0
        for ranking, scores in zip(rankings, normalised, strict=True)
    ]
    ids = dict.fromkeys(item.chunk_id for ranking in rankings for item in ranking)
    fused = {
        chunk_id: sum(
            weight * part.get(chunk_id, floor)
            for part, weight, floor in zip(normalised, weights, floors, strict=True)
        )
        for chunk_id in ids
    }
    return _ordered(fused)


def normalised_scores(ranking: Sequence[ScoredId]) -> dict[str, float]:
    """Each item's score over the ranking's best score, a negative one counting 0; all 0
    when the best score is not positive."""
    best = max((item.score for item in ranking), default=0.0)
    if best <= 0:
        return {item.chunk_id: 0.0 for item in ranking}
    return {item.chunk_id: max(item.score, 0.0) / best for item in ranking}


def fuse(
    query: HybridQuery, keyword: Sequence[ScoredId], vector: Sequence[ScoredId]
) -> list[ScoredId]:
    """The best ``query.k`` of the two rankings fused as ``query`` asks."""
    if query.fusion is Fusion.RRF:
        fused = fuse_rankings([keyword, vector], query.weights, query.rrf_k)
    else:
        fused = fuse_scores([keyword, vector], query.weights, query.candidates)
    return fused[: query.k]


def _ordered(scores: dict[str, float]) -> list[ScoredId]:
    """Best first; a stable sort keeps ties in first-seen order."""
    ordered = sorted(scores.items(), key=lambda pair: pair[1], reverse=True)
    return [ScoredId(chunk_id, score) for chunk_id, score in ordered]
