"""The Embedder port: text to unit-length vectors, and the model's own token count."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from skr.ports.vectors import Vector


class TokenCounter(Protocol):
    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``, without the special tokens."""
        ...


class Embedder(TokenCounter, Protocol):
    @property
    def model_id(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    @property
    def max_tokens(self) -> int:
        """The longest input the model reads, special tokens excluded."""
        ...

    async def embed(self, texts: Sequence[str]) -> Vector:
        """Unit-length vectors, shape ``(len(texts), dimensions)``."""
        ...
