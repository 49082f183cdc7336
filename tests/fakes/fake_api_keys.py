"""An in-memory ApiKeyStore for unit tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from skr.domain.access import ApiKey
from skr.domain.errors import ConflictError, NotFoundError


class InMemoryApiKeyStore:
    def __init__(self) -> None:
        self.keys: dict[str, tuple[ApiKey, str]] = {}

    async def add_key(self, key: ApiKey, secret_hash: str) -> None:
        if key.id in self.keys:
            raise ConflictError(f"there is already a key {key.id!r}")
        self.keys[key.id] = (key, secret_hash)

    async def find_key(self, key_id: str) -> tuple[ApiKey, str] | None:
        return self.keys.get(key_id)

    async def list_keys(self) -> list[ApiKey]:
        return [key for key, _ in self.keys.values()]

    async def revoke_key(self, key_id: str) -> ApiKey:
        if key_id not in self.keys:
            raise NotFoundError(f"there is no key {key_id!r}")
        key, secret_hash = self.keys[key_id]
        if key.revoked_at is None:
            key = replace(key, revoked_at=datetime.now(UTC))
            self.keys[key_id] = (key, secret_hash)
        return key

    async def count_active_keys(self) -> int:
        return sum(1 for key, _ in self.keys.values() if key.active)
