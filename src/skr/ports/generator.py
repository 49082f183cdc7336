"""The Generator port: a language model that writes an answer from numbered passages, and
turns a follow-up question into one that stands alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from skr.domain.models import Turn


@dataclass(frozen=True, slots=True)
class NumberedPassage:
    n: int
    title: str
    url: str
    text: str


class Generator(Protocol):
    async def generate(self, question: str, passages: Sequence[NumberedPassage]) -> str:
        """An answer citing passages as ``[n]``; ``GenerationError`` on any failure,
        timeout or open circuit."""
        ...

    async def rewrite(self, question: str, history: Sequence[Turn], timeout_seconds: float) -> str:
        """``question`` (the last of a conversation whose earlier turns are ``history``)
        rewritten to stand alone, e.g. "and how do I give it a prefix?" after a question
        about blueprints → "How do I give a Flask blueprint a URL prefix?". Within
        ``timeout_seconds``; ``GenerationError`` on any failure."""
        ...
