"""The embedded ApiKeyStore: keys in the SQLite database."""

from __future__ import annotations

import sqlite3

from skr.adapters.sqlite.database import SQLiteDatabase
from skr.adapters.sqlite.page_writes import now_text
from skr.adapters.sqlite.rows import key_from_row
from skr.domain.access import ApiKey
from skr.domain.errors import ConflictError, NotFoundError


class SQLiteApiKeyStore:
    def __init__(self, database: SQLiteDatabase) -> None:
        self._db = database

    async def add_key(self, key: ApiKey, secret_hash: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO api_keys (id, tenant, name, scopes, secret_hash, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (key.id, key.tenant, key.name, ",".join(sorted(key.scopes)), secret_hash,
                     key.created_at.isoformat()),
                )  # fmt: skip
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"there is already a key {key.id!r}") from exc

        await self._db.write(run)

    async def find_key(self, key_id: str) -> tuple[ApiKey, str] | None:
        row = await self._db.read(
            lambda c: c.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        )
        return None if row is None else (key_from_row(row), row["secret_hash"])

    async def list_keys(self) -> list[ApiKey]:
        rows = await self._db.read(
            lambda c: c.execute("SELECT * FROM api_keys ORDER BY seq").fetchall()
        )
        return [key_from_row(r) for r in rows]

    async def revoke_key(self, key_id: str) -> ApiKey:
        def run(conn: sqlite3.Connection) -> ApiKey:
            row = conn.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ? RETURNING *",
                (now_text(), key_id),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"there is no key {key_id!r}")
            return key_from_row(row)

        return await self._db.write(run)

    async def count_active_keys(self) -> int:
        row = await self._db.read(
            lambda c: c.execute("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL").fetchone()
        )
        return int(row[0])
