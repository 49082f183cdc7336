"""The Cache port: bytes by key with a time to live, and per-collection generations."""

from __future__ import annotations

from typing import Protocol


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None: ...

    async def generation(self, collection_id: str) -> int:
        """A number that changes whenever the collection's content changes; cache keys
        include it so that a change invalidates without a scan."""
        ...

    async def bump_generation(self, collection_id: str) -> None: ...
