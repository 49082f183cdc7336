"""Retrieval metrics against values worked out by hand, graded relevance included."""

from __future__ import annotations

import math

import pytest

from skr.services.evaluation import mean_metrics, mrr_at_k, ndcg_at_k, recall_at_k


def log2(n: int) -> float:
    return math.log2(n)


def test_ndcg_of_a_perfect_ranking_is_one() -> None:
    assert ndcg_at_k(["a", "b", "x"], {"a": 1, "b": 1}, 10) == pytest.approx(1.0)


def test_ndcg_with_binary_relevance_by_hand() -> None:
    # relevant at ranks 2 and 4: DCG = 1/log2(3) + 1/log2(5); ideal = 1/log2(2) + 1/log2(3)
    ranked = ["x", "a", "y", "b"]
    expected = (1 / log2(3) + 1 / log2(5)) / (1 + 1 / log2(3))
    assert ndcg_at_k(ranked, {"a": 1, "b": 1}, 10) == pytest.approx(expected)
    assert expected == pytest.approx(0.6509209298)


def test_ndcg_uses_the_grade_as_gain() -> None:
    # grades 2 and 1, ranked in the wrong order: DCG = 1 + 2/log2(3); ideal = 2 + 1/log2(3)
    relevance = {"a": 2, "b": 1}
    expected = (1 + 2 / log2(3)) / (2 + 1 / log2(3))
    assert ndcg_at_k(["b", "a"], relevance, 10) == pytest.approx(expected)
    assert expected == pytest.approx(0.8597186998)
    assert ndcg_at_k(["a", "b"], relevance, 10) == pytest.approx(1.0)


def test_ndcg_cuts_both_the_ranking_and_the_ideal_at_k() -> None:
    # three relevant, k = 2: the ideal holds only two of them
    relevance = {"a": 1, "b": 1, "c": 1}
    assert ndcg_at_k(["a", "x", "b"], relevance, 2) == pytest.approx(1 / (1 + 1 / log2(3)))
    assert ndcg_at_k(["a", "b", "c"], relevance, 2) == pytest.approx(1.0)


def test_non_positive_judgements_are_not_relevant() -> None:
    relevance = {"a": 0, "b": -1, "c": 1}
    assert ndcg_at_k(["a", "b", "c"], relevance, 10) == pytest.approx(1 / log2(4))
    assert recall_at_k(["a", "b"], relevance, 10) == 0.0
    assert mrr_at_k(["a", "b", "c"], relevance, 10) == pytest.approx(1 / 3)


def test_a_query_with_nothing_relevant_retrieved_scores_zero() -> None:
    relevance = {"a": 1}
    ranked = ["x", "y", "z"]
    assert ndcg_at_k(ranked, relevance, 10) == 0.0
    assert recall_at_k(ranked, relevance, 10) == 0.0
    assert mrr_at_k(ranked, relevance, 10) == 0.0
    assert ndcg_at_k([], relevance, 10) == 0.0


def test_recall_counts_the_share_found_within_k() -> None:
    relevance = {"a": 1, "b": 2, "c": 1, "d": 1}
    ranked = ["a", "x", "b", "c"]
    assert recall_at_k(ranked, relevance, 2) == pytest.approx(1 / 4)
    assert recall_at_k(ranked, relevance, 4) == pytest.approx(3 / 4)


def test_mrr_is_the_reciprocal_rank_of_the_first_relevant_within_k() -> None:
    ranked = ["x", "y", "a", "b"]
    assert mrr_at_k(ranked, {"a": 1, "b": 1}, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(ranked, {"a": 1, "b": 1}, 2) == 0.0
    assert mrr_at_k(ranked, {"b": 1}, 4) == pytest.approx(1 / 4)


def test_means_are_over_the_judged_queries_and_missing_runs_score_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}, "q3": {"d": 1}}
    runs = {"q1": ["a"], "q2": ["x", "c", "b"]}  # q3 was not run: it scores 0
    means = mean_metrics(runs, qrels, [1, 10])
    q2_ndcg = (1 / log2(3) + 1 / log2(4)) / (1 + 1 / log2(3))
    assert means["nDCG@10"] == pytest.approx((1 + q2_ndcg + 0) / 3)
    assert means["Recall@1"] == pytest.approx(1 / 3)
    assert means["Recall@10"] == pytest.approx((1 + 1 + 0) / 3)
    assert means["MRR@10"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert means["MRR@1"] == pytest.approx(1 / 3)
    assert set(means) == {f"{m}@{k}" for m in ("nDCG", "Recall", "MRR") for k in (1, 10)}


def test_queries_without_judgements_are_left_out_of_the_mean() -> None:
    means = mean_metrics({"q1": ["a"], "q2": ["b"]}, {"q1": {"a": 1}, "q2": {}}, [10])
    assert means["nDCG@10"] == pytest.approx(1.0)
