"""The Generator port: a language model that writes an answer from numbered passages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


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
