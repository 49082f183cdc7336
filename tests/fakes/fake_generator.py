"""A Generator for unit tests: a scripted answer, or a failure."""

from __future__ import annotations

from collections.abc import Sequence

from skr.domain.errors import GenerationError
from skr.domain.models import Turn
from skr.ports.generator import NumberedPassage


class ScriptedGenerator:
    def __init__(self, answer: str | None = None, *, fail: bool = False) -> None:
        self.answer = answer
        self.fail = fail
        self.calls: list[tuple[str, list[NumberedPassage]]] = []
        self.rewrites: list[tuple[str, list[Turn]]] = []
        self.rewritten: str | None = None  # what rewrite answers; None: a scripted join

    async def generate(self, question: str, passages: Sequence[NumberedPassage]) -> str:
        self.calls.append((question, list(passages)))
        if self.fail:
            raise GenerationError("the answer model timed out")
        if self.answer is not None:
            return self.answer
        if not passages:
            return "No passages."
        first = passages[0]
        return f"{first.text.split('.')[0]}. [{first.n}]"  # cited by its own number

    async def rewrite(self, question: str, history: Sequence[Turn], timeout_seconds: float) -> str:
        self.rewrites.append((question, list(history)))
        if self.fail:
            raise GenerationError("the rewrite model timed out")
        if self.rewritten is not None:
            return self.rewritten
        first = next((t.text for t in history if t.role == "user"), "")
        return f"{question} ({first})" if first else question
