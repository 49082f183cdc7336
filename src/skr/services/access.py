"""API keys: made, checked, revoked; and each key's own limits (request rate, jobs)."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from skr.domain.access import ApiKey, Scope
from skr.domain.errors import AuthenticationError, InvalidInputError, RateLimitedError
from skr.ports.api_keys import ApiKeyStore

KEY_PREFIX = "skr_"
_TOKEN = re.compile(r"^skr_([0-9a-f]{16})_([A-Za-z0-9_-]{32,64})$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_REMEMBERED = 10_000


def secret_hash(secret: str) -> str:
    """SHA-256 of the secret. A secret is 256 random bits, so a slow password hash
    (bcrypt, argon2) would add nothing but latency to every request."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewKey:
    key: ApiKey
    token: str  # shown once, to the person who made the key; SKR keeps only its hash


class AccessService:
    """Makes and checks API keys. A checked token is remembered for ``cache_seconds``,
    so a revocation takes effect everywhere within that time."""

    def __init__(
        self,
        keys: ApiKeyStore,
        *,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._checked: OrderedDict[str, tuple[float, ApiKey | None]] = OrderedDict()
        self._open: tuple[float, bool] | None = None

    async def create_key(self, tenant: str, name: str, scopes: Iterable[Scope]) -> NewKey:
        if not _TENANT.match(tenant):
            raise InvalidInputError(
                "a tenant is 1 to 64 letters, digits, '.', '_' or '-', starting with one "
                "of the first two"
            )
        chosen = frozenset(scopes)
        if not chosen:
            raise InvalidInputError("a key needs at least one scope: read, ingest or admin")
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        key = ApiKey(key_id, tenant, name.strip()[:200], chosen, datetime.now(UTC))
        await self._keys.add_key(key, secret_hash(secret))
        self._open = None
        return NewKey(key, f"{KEY_PREFIX}{key_id}_{secret}")

    async def list_keys(self) -> list[ApiKey]:
        return await self._keys.list_keys()

    async def revoke_key(self, key_id: str) -> ApiKey:
        key = await self._keys.revoke_key(key_id)
        self._checked.clear()
        self._open = None
        return key

    async def open_mode(self) -> bool:
        """No key was ever made: SKR runs open (and only on loopback). Once one exists,
        keys are wanted for good: revoking the last one locks SKR, it never opens it."""
        now = self._clock()
        if self._open is None or now - self._open[0] >= self._cache_seconds:
            self._open = (now, not await self._keys.list_keys())
        return self._open[1]

    async def authenticate(self, token: str | None) -> ApiKey:
        """The active key this token is; ``AuthenticationError`` otherwise (the reason
        never says whether a key id exists)."""
        if not token:
            raise AuthenticationError(
                "an API key is required: send it as 'Authorization: Bearer <key>'"
            )
        digest = secret_hash(token)
        now = self._clock()
        cached = self._checked.get(digest)
        if cached is not None and now - cached[0] < self._cache_seconds:
            key = cached[1]
        else:
            key = await self._lookup(token)
            self._checked[digest] = (now, key)
            self._checked.move_to_end(digest)
            while len(self._checked) > _REMEMBERED:
                self._checked.popitem(last=False)
        if key is None:
            raise AuthenticationError("the API key is not valid (unknown, mistyped or revoked)")
        return key

    async def _lookup(self, token: str) -> ApiKey | None:
        match = _TOKEN.match(token)
        if match is None:
            return None
        found = await self._keys.find_key(match[1])
        if found is None:
            return None
        key, stored_hash = found
        if not hmac.compare_digest(stored_hash, secret_hash(match[2])) or not key.active:
            return None
        return key


class KeyRateLimiter:
    """A token bucket per key: ``rate`` requests a second on average, bursts of ``burst``.
    Kept in this process: with N API processes a key gets up to N times the rate."""

    def __init__(
        self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def take(self, key_id: str) -> None:
        """One request's token, or ``RateLimitedError`` with when to come back."""
        now = self._clock()
        tokens, then = self._buckets.pop(key_id, (float(self._burst), now))
        tokens = min(float(self._burst), tokens + (now - then) * self._rate)
        if tokens < 1.0:
            self._buckets[key_id] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / self._rate) if self._rate > 0 else 60
            raise RateLimitedError(
                f"this API key is over its rate of {self._rate:g} requests a second",
                max(1, wait),
            )
        self._buckets[key_id] = (tokens - 1.0, now)
        while len(self._buckets) > _REMEMBERED:
            self._buckets.popitem(last=False)
