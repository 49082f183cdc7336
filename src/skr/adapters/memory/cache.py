"""The embedded Cache: a bounded in-process LRU with time-to-live and collection generations."""

from __future__ import annotations

import time
from collections import OrderedDict


class MemoryCache:
    """Implements the Cache port in memory; holds nothing that cannot be recomputed."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._generations: dict[str, int] = {}

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at < time.monotonic():
            self._entries.pop(key, None)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        if self._max_entries == 0 or ttl_seconds <= 0:
            return
        self._entries[key] = (time.monotonic() + ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def generation(self, collection_id: str) -> int:
        return self._generations.get(collection_id, 0)

    async def bump_generation(self, collection_id: str) -> None:
        self._generations[collection_id] = self._generations.get(collection_id, 0) + 1
