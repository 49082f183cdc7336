"""A pooled PostgreSQL connection source (psycopg 3 async pool), with errors translated."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from skr.domain.errors import DependencyError, OverloadedError, SKRError

logger = logging.getLogger(__name__)

Connection = AsyncConnection[DictRow]

ErrorTranslation = Callable[[psycopg.Error], SKRError]
"""How one adapter words a driver error: the domain error raised in its place."""


class PostgresDatabase:
    """Owns the pool. ``connection()`` lends a connection in autocommit mode;
    ``transaction()`` lends one inside a transaction. Waiting for a free connection is
    bounded by ``pool_timeout_seconds`` and becomes ``OverloadedError`` (a 503)."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        pool_timeout_seconds: float = 5.0,
        schema: str | None = None,
    ) -> None:
        self._url = url
        self._schema = schema
        self._pool_timeout = pool_timeout_seconds
        self._pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=pool_timeout_seconds,
            open=False,
            kwargs=self._connect_kwargs(),
            configure=self._configure,
            connection_class=AsyncConnection[DictRow],
            reconnect_timeout=30,
        )

    def _connect_kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {"autocommit": True, "row_factory": dict_row}
        if self._schema is not None:
            kwargs["options"] = f"-c search_path={self._schema},public"
        return kwargs

    async def _configure(self, conn: Connection) -> None:
        try:
            await register_vector_async(conn)
        except psycopg.ProgrammingError:
            # the extension does not exist yet: only `skr migrate` may use this connection
            logger.debug("pgvector type not registered on this connection")

    @property
    def url(self) -> str:
        return self._url

    @property
    def schema(self) -> str | None:
        return self._schema

    @property
    def pool(self) -> AsyncConnectionPool[Connection]:
        return self._pool

    async def open(self) -> None:
        """Open the pool without waiting for PostgreSQL: the service starts even when the
        database is down and recovers when it comes back."""
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        try:
            async with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise OverloadedError(
                f"no database connection came free within {self._pool_timeout:g} s",
                retry_after_seconds=1,
            ) from exc
        except psycopg.OperationalError as exc:
            raise DependencyError(f"PostgreSQL is unreachable: {exc}") from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def translated(
        self, translate: ErrorTranslation, *, transaction: bool = False
    ) -> AsyncIterator[Connection]:
        """A pooled connection (in one transaction when asked) whose driver errors are
        raised as ``translate`` words them, the driver's error as their cause."""
        try:
            if transaction:
                async with self.transaction() as conn:
                    yield conn
            else:
                async with self.connection() as conn:
                    yield conn
        except psycopg.Error as exc:
            raise translate(exc) from exc
