"""The ApiKeyStore on PostgreSQL, shared by every API process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from skr.adapters.postgres.database import Connection, PostgresDatabase
from skr.domain.access import ApiKey, Scope
from skr.domain.errors import ConflictError, DependencyError, NotFoundError


def _key_from_row(row: dict[str, Any]) -> ApiKey:
    return ApiKey(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        scopes=frozenset(Scope(s) for s in row["scopes"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


class PostgresApiKeyStore:
    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        try:
            async with self._db.connection() as conn:
                yield conn
        except psycopg.errors.UniqueViolation as exc:
            raise ConflictError("there is already a key with that id") from exc
        except psycopg.Error as exc:
            raise DependencyError(f"the key store in PostgreSQL failed: {exc}") from exc

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
        return None if row is None else (_key_from_row(row), row["secret_hash"])

    async def list_keys(self) -> list[ApiKey]:
        async with self._connection() as conn:
            cursor = await conn.execute("SELECT * FROM api_keys ORDER BY seq")
            rows = await cursor.fetchall()
        return [_key_from_row(r) for r in rows]

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
        return _key_from_row(row)

    async def count_active_keys(self) -> int:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) AS n FROM api_keys WHERE revoked_at IS NULL"
            )
            row = await cursor.fetchone()
        return int(row["n"]) if row else 0
