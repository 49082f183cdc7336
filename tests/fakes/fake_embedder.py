"""A deterministic Embedder without a model: hashed bag of words, for unit tests."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from skr.ports.vectors import Vector

_WORD = re.compile(r"\w+")
_TOKEN = re.compile(r"\w+|[^\w\s]")


class FakeEmbedder:
    """Texts sharing words get close vectors; the same text always gets the same vector;
    tokens past ``max_tokens`` are not read.

    ``batches`` records every call to :meth:`embed`, so tests can see what was embedded.
    """

    def __init__(self, *, dimensions: int = 384, max_tokens: int = 254) -> None:
        self._dimensions = dimensions
        self._max_tokens = max_tokens
        self.batches: list[list[str]] = []

    @property
    def model_id(self) -> str:
        return f"fake-hash-{self._dimensions}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, text: str) -> int:
        return len(_TOKEN.findall(text))

    async def embed(self, texts: Sequence[str]) -> Vector:
        self.batches.append(list(texts))
        vectors = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            vectors[row] = self.vector(text)
        return vectors

    def vector(self, text: str) -> Vector:
        """The unit vector of one text (synchronous, for building expectations in tests).

        Like the model, it reads only the first ``max_tokens`` tokens."""
        vector = np.zeros(self._dimensions, dtype=np.float32)
        read = _TOKEN.findall(text.lower())[: self._max_tokens]
        for word in (token for token in read if _WORD.fullmatch(token)):
            digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
            vector[int.from_bytes(digest, "big") % self._dimensions] += 1.0
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            vector[0] = 1.0
            return vector
        return vector / np.float32(norm)
