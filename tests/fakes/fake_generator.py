"""A Generator for unit tests: a scripted answer, or a failure."""

from __future__ import annotations

from collections.abc import Sequence

from skr.domain.errors import GenerationError
from skr.ports.generator import NumberedPassage


class ScriptedGenerator:
    def __init__(self, answer: str | None = None, *, fail: bool = False) -> None:
        self.answer = answer
        self.fail = fail
        self.calls: list[tuple[str, list[NumberedPassage]]] = []

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
