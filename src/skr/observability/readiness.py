"""Readiness: dependency checks whose result is cached for a few seconds."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from skr.domain.errors import SKRError
from skr.ports.store import Store


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    ready: bool
    degraded: bool
    checks: dict[str, str]


class ReadinessCheck:
    """Pings the dependencies at most once per ``ttl_seconds``; callers share the result.
    The store is required; other checks (Redis) only make the report degraded."""

    def __init__(
        self,
        *,
        store: Store,
        ttl_seconds: float,
        extra: Mapping[str, Callable[[], Awaitable[str]]] | None = None,
    ) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._extra = dict(extra or {})
        self._checked_at = float("-inf")
        self._report = ReadinessReport(False, False, {"store": "not checked"})

    async def report(self) -> ReadinessReport:
        if time.monotonic() - self._checked_at < self._ttl:
            return self._report
        checks: dict[str, str] = {}
        try:
            await self._store.ping()
            checks["store"] = "ok"
        except SKRError as exc:
            checks["store"] = f"failing: {exc.detail}"
        for name, check in self._extra.items():
            checks[name] = await check()
        ready = checks["store"] == "ok"
        degraded = any(v != "ok" for v in checks.values())
        self._report = ReadinessReport(ready, degraded, checks)
        self._checked_at = time.monotonic()
        return self._report
