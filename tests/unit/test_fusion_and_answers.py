"""Rank fusion, sentence choice and the citation check, on plain values."""

from __future__ import annotations

import numpy as np
import pytest

from skr.domain.models import ChunkKind, Citation, Fusion, Hit, HybridQuery, ScoredId
from skr.domain.ranking import fuse, fuse_rankings, fuse_scores, normalised_scores
from skr.services.answering import extractive_answer, split_sentences, verified_citations


def test_rrf_by_hand() -> None:
    keyword = [ScoredId("a", 9), ScoredId("b", 5)]
    vector = [ScoredId("b", 0.9), ScoredId("c", 0.8)]
    fused = fuse_rankings([keyword, vector], [1.0, 1.0], rrf_k=60)
    assert [f.chunk_id for f in fused] == ["b", "a", "c"]
    assert fused[0].score == 1 / 62 + 1 / 61
    assert fused[1].score == 1 / 61
    assert fused[2].score == 1 / 62


def test_weights_change_the_order() -> None:
    keyword = [ScoredId("a", 9)]
    vector = [ScoredId("c", 0.8)]
    fused = fuse_rankings([keyword, vector], [1.0, 2.0], rrf_k=60)
    assert [f.chunk_id for f in fused] == ["c", "a"]


def test_score_fusion_by_hand_with_rankings_that_hold_every_match() -> None:
    # fewer items than the 10 candidates: an item missing from a ranking gets 0 from it
    keyword = [ScoredId("a", 8.0), ScoredId("b", 2.0)]  # over the best: 1, 0.25
    vector = [ScoredId("b", 0.5), ScoredId("c", 0.4), ScoredId("a", 0.1)]  # 1, 0.8, 0.2
    fused = fuse_scores([keyword, vector], [0.4, 0.6], candidates=10)
    assert [f.chunk_id for f in fused] == ["b", "a", "c"]
    # b: 0.4 x 0.25 + 0.6 x 1; a: 0.4 x 1 + 0.6 x 0.2; c: 0.6 x 0.8
    assert [f.score for f in fused] == pytest.approx([0.7, 0.52, 0.48])


def test_score_fusion_gives_a_full_rankings_floor_and_breaks_ties_keyword_first() -> None:
    # two candidates each, both rankings full: a missing item may score just below the
    # last one, so it gets the ranking's lowest normalised score
    keyword = [ScoredId("a", 4.0), ScoredId("b", 1.0)]  # 1, 0.25; floor 0.25
    vector = [ScoredId("c", 0.5), ScoredId("d", 0.25)]  # 1, 0.5; floor 0.5
    fused = fuse_scores([keyword, vector], [0.5, 0.5], candidates=2)
    # a: 0.5 + 0.25; c: 0.125 + 0.5; b and d: 0.125 + 0.25, tied, keyword's b first
    assert [(f.chunk_id, f.score) for f in fused] == [
        ("a", 0.75), ("c", 0.625), ("b", 0.375), ("d", 0.375),
    ]  # fmt: skip


def test_scores_are_normalised_by_the_best_and_never_below_zero() -> None:
    assert normalised_scores([ScoredId("x", -0.2), ScoredId("y", 0.4)]) == {"x": 0, "y": 1}
    assert normalised_scores([ScoredId("x", -0.1), ScoredId("y", -0.3)]) == {"x": 0, "y": 0}
    assert normalised_scores([]) == {}
    # a ranking with nothing positive adds nothing: the other decides the order
    fused = fuse_scores([[ScoredId("x", 0.0)], [ScoredId("y", 0.2), ScoredId("x", 0.1)]],
                        [0.5, 0.5], candidates=5)  # fmt: skip
    assert [(f.chunk_id, f.score) for f in fused] == [("y", 0.5), ("x", 0.25)]


@pytest.mark.parametrize("fusion", list(Fusion))
def test_fuse_follows_the_query_and_keeps_k(fusion: Fusion) -> None:
    keyword = [ScoredId("a", 9.0), ScoredId("b", 5.0)]
    vector = [ScoredId("b", 0.9), ScoredId("c", 0.8)]
    query = HybridQuery("q", np.zeros(3), 2, None, 10, (0.4, 0.6), 60, fusion)
    expected = (
        fuse_rankings([keyword, vector], [0.4, 0.6], 60)
        if fusion is Fusion.RRF
        else fuse_scores([keyword, vector], [0.4, 0.6], 10)
    )
    assert fuse(query, keyword, vector) == expected[:2]
    assert HybridQuery("q", np.zeros(3), 2, None, 10, (0.4, 0.6), 60).fusion is Fusion.SCORE


def hit(i: int, text: str) -> Hit:
    return Hit(f"c{i}", f"d{i}", f"http://x.test/{i}", f"Page {i}", text, 1.0, ChunkKind.TEXT)


def test_sentences_are_exact_substrings() -> None:
    text = "Flask is a micro framework.  It is small!\nBlueprints organise apps? Yes indeed."
    for sentence in split_sentences(text):
        assert sentence in text


def test_extractive_answer_cites_the_sentences_it_uses() -> None:
    hits = [
        hit(1, "Cooking needs heat. Pasta boils in ten minutes of water."),
        hit(2, "A blueprint is registered with register_blueprint on the app. Views live there."),
    ]
    answer, citations = extractive_answer("How is a blueprint registered?", hits)
    assert "register_blueprint" in answer
    by_n = {c.n: c for c in citations}
    for n, citation in by_n.items():
        assert f"[{n}]" in answer
        assert citation.quote in hits[[h.id for h in hits].index(citation.chunk_id)].text
    assert any(c.url == "http://x.test/2" for c in citations)


def test_forged_quote_is_dropped() -> None:
    passages = {"c1": "Flask is a micro framework."}
    good = Citation(1, "u", "t", "Flask is a micro framework.", "c1")
    forged = Citation(2, "u", "t", "Flask is a macro framework.", "c1")
    unknown = Citation(3, "u", "t", "Flask", "c9")
    kept, dropped = verified_citations([good, forged, unknown], passages)
    assert kept == [good]
    assert dropped == 2
