"""The one way SKR builds a Redis client: short timeouts, and no retry that waits."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def redis_client(
    url: str,
    *,
    socket_timeout_seconds: float = 0.5,
    connect_timeout_seconds: float = 0.5,
    health_check_interval_seconds: float = 30.0,
    retries: int = 1,
) -> Redis:
    """A client with its own connection pool; connections open on first use.

    The library's default retries with exponential backoff for seconds. Every use of Redis
    here (the cache, job wake-ups, politeness per host) has a fallback and must fail fast
    instead, so at most ``retries`` immediate retries (for a stale pooled socket)."""
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout_seconds,
        socket_connect_timeout=connect_timeout_seconds,
        health_check_interval=health_check_interval_seconds,
        retry=Retry(NoBackoff(), retries),
    )


class RedisClientOwner:
    """An adapter that owns one client: ``start()`` builds it with ``_new_client()``,
    ``aclose()`` closes it, and ``async with`` does both; never built in ``__init__``."""

    _client: Redis | None = None

    def _new_client(self) -> Redis:
        raise NotImplementedError

    async def start(self) -> None:
        """Build the client and its connection pool; connections open on first use."""
        if self._client is None:
            self._client = self._new_client()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
