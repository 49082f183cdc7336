"""The ApiKeyStore port: API keys and the hashes of their secrets."""

from __future__ import annotations

from typing import Protocol

from skr.domain.access import ApiKey


class ApiKeyStore(Protocol):
    async def add_key(self, key: ApiKey, secret_hash: str) -> None:
        """Store a new key; ``ConflictError`` if its id is taken."""
        ...

    async def find_key(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key with this id and its secret's hash, revoked or not; ``None`` if unknown."""
        ...

    async def list_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        ...

    async def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke a key (revoking twice keeps the first time); ``NotFoundError`` if unknown."""
        ...

    async def count_active_keys(self) -> int: ...
