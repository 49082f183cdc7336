"""Rank fusion, sentence choice and the citation check, on plain values."""

from __future__ import annotations

from skr.domain.models import ChunkKind, Citation, Hit, ScoredId
from skr.domain.ranking import fuse_rankings
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
