"""Rank fusion: combine keyword and vector rankings into one."""

from __future__ import annotations

from collections.abc import Sequence

from skr.domain.models import ScoredId


def fuse_rankings(
    rankings: Sequence[Sequence[ScoredId]], weights: Sequence[float], rrf_k: int
) -> list[ScoredId]:
    """Weighted reciprocal-rank fusion: each list adds ``weight / (rrf_k + rank)``."""
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item.chunk_id] = scores.get(item.chunk_id, 0.0) + weight / (rrf_k + rank)
    ordered = sorted(scores.items(), key=lambda pair: pair[1], reverse=True)
    return [ScoredId(chunk_id, score) for chunk_id, score in ordered]
