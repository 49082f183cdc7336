"""Ports wrapped to feed the metrics: a Cache that counts hits and misses, an Embedder
that times its calls. The container wraps the adapters in these; services see the ports."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from prometheus_client import Counter, Histogram

from skr.ports.cache import Cache
from skr.ports.embedder import Embedder
from skr.ports.vectors import Vector

# A key's prefix names what is cached ("qe:…" query embeddings, "s:…" search results);
# anything else is counted as "other" so a new key scheme cannot explode the label set.
_PREFIX = re.compile(r"([a-z][a-z_]{0,15}):")


def cache_label(key: str) -> str:
    match = _PREFIX.match(key)
    return match.group(1) if match else "other"


class MeteredCache:
    """Implements the Cache port over another, counting each ``get`` as a hit or a miss."""

    def __init__(self, inner: Cache, lookups: Counter) -> None:
        self._inner = inner
        self._lookups = lookups

    async def get(self, key: str) -> bytes | None:
        value = await self._inner.get(key)
        self._lookups.labels(cache_label(key), "miss" if value is None else "hit").inc()
        return value

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        await self._inner.set(key, value, ttl_seconds)

    async def generation(self, collection_id: str) -> int:
        return await self._inner.generation(collection_id)

    async def bump_generation(self, collection_id: str) -> None:
        await self._inner.bump_generation(collection_id)


class TimedEmbedder:
    """Implements the Embedder port over another, timing each ``embed`` call (failed ones
    too: a slow failure is still time the caller waited) and counting the texts."""

    def __init__(self, inner: Embedder, seconds: Histogram, texts: Counter) -> None:
        self._inner = inner
        self._seconds = seconds
        self._texts = texts

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    @property
    def dimensions(self) -> int:
        return self._inner.dimensions

    @property
    def max_tokens(self) -> int:
        return self._inner.max_tokens

    def count_tokens(self, text: str) -> int:
        return self._inner.count_tokens(text)

    async def embed(self, texts: Sequence[str]) -> Vector:
        if not texts:
            return await self._inner.embed(texts)
        started = time.perf_counter()
        try:
            vectors = await self._inner.embed(texts)
        finally:
            self._seconds.observe(time.perf_counter() - started)
        self._texts.inc(len(texts))
        return vectors
