"""The shared Cache on Redis: values with a time to live and per-collection generation counters."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from skr.adapters.redis.client import RedisClientOwner, redis_client
from skr.domain.errors import DependencyError

T = TypeVar("T")


class RedisCache(RedisClientOwner):
    """Implements the Cache port on Redis; every key starts with ``namespace``.

    Values live under ``<namespace>v:<key>`` and generations under
    ``<namespace>gen:<collection id>``, so no cache key can overwrite a generation.

    The client is built in ``start()`` (or ``async with``), never in ``__init__``. Every
    driver error (connection refused, timeout, protocol) surfaces as ``DependencyError``.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "skr:",
        socket_timeout_seconds: float = 0.5,
        connect_timeout_seconds: float = 0.5,
        health_check_interval_seconds: float = 30.0,
        retries: int = 1,
    ) -> None:
        self._url = url
        self._namespace = namespace
        self._socket_timeout = socket_timeout_seconds
        self._connect_timeout = connect_timeout_seconds
        self._health_check_interval = health_check_interval_seconds
        self._retries = retries
        self._client: Redis | None = None

    @property
    def namespace(self) -> str:
        return self._namespace

    def _new_client(self) -> Redis:
        return redis_client(
            self._url,
            socket_timeout_seconds=self._socket_timeout,
            connect_timeout_seconds=self._connect_timeout,
            health_check_interval_seconds=self._health_check_interval,
            retries=self._retries,
        )

    async def ping(self) -> None:
        await self._call(self._redis().ping())

    async def get(self, key: str) -> bytes | None:
        value = await self._call(self._redis().get(self._value_key(key)))
        if value is None:
            return None
        return value if isinstance(value, bytes) else value.encode()

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            return
        ttl_ms = max(1, round(ttl_seconds * 1000))
        await self._call(self._redis().set(self._value_key(key), value, px=ttl_ms))

    async def generation(self, collection_id: str) -> int:
        value = await self._call(self._redis().get(self._generation_key(collection_id)))
        return 0 if value is None else int(value)

    async def bump_generation(self, collection_id: str) -> None:
        await self._call(self._redis().incr(self._generation_key(collection_id)))

    def _value_key(self, key: str) -> str:
        return f"{self._namespace}v:{key}"

    def _generation_key(self, collection_id: str) -> str:
        return f"{self._namespace}gen:{collection_id}"

    def _redis(self) -> Redis:
        if self._client is None:
            raise DependencyError("the Redis cache is not started")
        return self._client

    async def _call(self, command: Awaitable[T]) -> T:
        try:
            return await command
        except RedisError as exc:
            raise DependencyError(f"Redis cache failed: {type(exc).__name__}: {exc}") from exc
