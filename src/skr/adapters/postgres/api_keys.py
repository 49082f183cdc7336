"""The ApiKeyStore on PostgreSQL, shared by every API process."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import psycopg

from skr.adapters.postgres.database import Connection, PostgresDatabase
from skr.adapters.postgres.rows import key_from_row
from skr.domain.access import ApiKey
from skr.domain.errors import ConflictError, DependencyError, NotFoundError, SKRError


def _key_store_error(exc: psycopg.Error) -> SKRError:
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return ConflictError("there is already a key with that id")
    return DependencyError(f"the key store in PostgreSQL failed: {exc}")


class PostgresApiKeyStore:
    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    def _connection(self) -> AbstractAsyncContextManager[Connection]:
        return self._db.translated(_key_store_error)

    async def add_key(self, key: ApiKey, secret_hash: str) -> None:
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO api_keys (id, tenant, name, scopes, secret_hash, created_at) "
                "VALUES (%(id)s, %(tenant)s, %(name)s, %(scopes)s, %(hash)s, %(created)s)",
                {"id": key.id, "tenant": key.tenant, "name": key.name,
                 "scopes": sorted(key.scopes), "hash": secret_hash, "created": key.created_at},
            )  # fmt: skip

    async def find_key(self, key_id: str) -> tuple[ApiKey, str] | None:
        async with self._connection() as conn:
            cursor = await conn.execute("SELECT * FROM api_keys WHERE id = %(id)s", {"id": key_id})
            row = await cursor.fetchone()
        return None if row is None else (key_from_row(row), row["secret_hash"])

    async def list_keys(self) -> list[ApiKey]:
        async with self._connection() as conn:
            cursor = await conn.execute("SELECT * FROM api_keys ORDER BY seq")
            rows = await cursor.fetchall()
        return [key_from_row(r) for r in rows]

    async def revoke_key(self, key_id: str) -> ApiKey:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) "
                "WHERE id = %(id)s RETURNING *",
                {"id": key_id},
            )
            row = await cursor.fetchone()
        if row is None:
            raise NotFoundError(f"there is no key {key_id!r}")
        return key_from_row(row)

    async def count_active_keys(self) -> int:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) AS n FROM api_keys WHERE revoked_at IS NULL"
            )
            row = await cursor.fetchone()
        return int(row["n"]) if row else 0
