"""Extractive answers: the sentences of the retrieved passages that best answer a question."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from skr.domain.models import Citation, Hit

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i in is it its of on or so that the "
    "this to was what when where which who why will with you your".split()
)
_MIN_SENTENCE_CHARS = 20
_MAX_SENTENCE_CHARS = 600


@dataclass(frozen=True, slots=True)
class ScoredSentence:
    hit_rank: int
    text: str
    score: float


def terms(text: str) -> list[str]:
    """Lower-case words without stopwords, with a crude plural fold."""
    words = (w.lower() for w in _WORD.findall(text))
    return [w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words if w not in _STOPWORDS]


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, each an exact substring of it."""
    sentences = []
    for piece in _SENTENCE_END.split(text):
        piece = piece.strip()
        if _MIN_SENTENCE_CHARS <= len(piece) <= _MAX_SENTENCE_CHARS:
            sentences.append(piece)
    return sentences


def score_sentences(question: str, hits: Sequence[Hit]) -> list[ScoredSentence]:
    wanted = set(terms(question))
    scored: list[ScoredSentence] = []
    for rank, hit in enumerate(hits):
        for sentence in split_sentences(hit.text):
            words = terms(sentence)
            if not words:
                continue
            overlap = len(wanted.intersection(words))
            score = overlap / math.sqrt(len(words)) + 0.3 / (1 + rank)
            scored.append(ScoredSentence(rank, sentence, score))
    scored.sort(key=lambda s: s.score, reverse=True)
    return scored


def extractive_answer(
    question: str, hits: Sequence[Hit], max_sentences: int = 3
) -> tuple[str, list[Citation]]:
    """Pick the best sentences (at most two per passage), cite each passage as [n]."""
    chosen: list[ScoredSentence] = []
    per_hit: dict[int, int] = {}
    for sentence in score_sentences(question, hits):
        if len(chosen) == max_sentences:
            break
        if per_hit.get(sentence.hit_rank, 0) >= 2 or any(c.text == sentence.text for c in chosen):
            continue
        per_hit[sentence.hit_rank] = per_hit.get(sentence.hit_rank, 0) + 1
        chosen.append(sentence)
    chosen.sort(key=lambda s: s.hit_rank)
    numbers: dict[int, int] = {}
    citations: list[Citation] = []
    parts: list[str] = []
    for sentence in chosen:
        hit = hits[sentence.hit_rank]
        if sentence.hit_rank not in numbers:
            numbers[sentence.hit_rank] = len(numbers) + 1
        n = numbers[sentence.hit_rank]
        citations.append(Citation(n, hit.url, hit.title, sentence.text, hit.id, hit.section))
        parts.append(f"{sentence.text} [{n}]")
    return " ".join(parts), citations


def verified_citations(
    citations: Sequence[Citation], passages: dict[str, str]
) -> tuple[list[Citation], int]:
    """Keep citations whose quote appears verbatim in the cited chunk's text; count the rest."""
    kept = [c for c in citations if c.quote and c.quote in passages.get(c.chunk_id, "")]
    return kept, len(citations) - len(kept)
