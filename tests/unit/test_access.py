"""API keys on fakes: made, checked (only with their exact secret), scoped, revoked,
and limited per key."""

from __future__ import annotations

import pytest

from skr.domain.access import Scope
from skr.domain.errors import AuthenticationError, InvalidInputError, RateLimitedError
from skr.services.access import AccessService, KeyRateLimiter, secret_hash
from tests.fakes.fake_api_keys import InMemoryApiKeyStore
from tests.fakes.fake_clock import ManualClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_key_authenticates_with_its_exact_token_only() -> None:
    store = InMemoryApiKeyStore()
    access = AccessService(store, cache_seconds=0)
    assert await access.open_mode()
    made = await access.create_key("acme", "ci", [Scope.READ])
    assert not await access.open_mode()
    assert made.token.startswith(f"skr_{made.key.id}_")
    [(_stored, stored_hash)] = store.keys.values()
    assert made.token.split("_", 2)[2] not in stored_hash  # only the hash is kept
    assert stored_hash == secret_hash(made.token.split("_", 2)[2])
    assert (await access.authenticate(made.token)).tenant == "acme"
    for bad in [None, "", "skr_nope", made.token[:-1] + "x", made.token + "x",
                f"skr_{'0' * 16}_{made.token.split('_', 2)[2]}", "Bearer " + made.token]:  # fmt: skip
        with pytest.raises(AuthenticationError):
            await access.authenticate(bad)


async def test_a_revoked_key_stops_working_after_the_cache_time() -> None:
    clock = ManualClock(100.0)
    access = AccessService(InMemoryApiKeyStore(), cache_seconds=5, clock=clock)
    made = await access.create_key("acme", "", [Scope.ADMIN])
    await access.authenticate(made.token)
    await access.revoke_key(made.key.id)  # in this process: forgotten at once
    with pytest.raises(AuthenticationError):
        await access.authenticate(made.token)
    assert not await access.open_mode()  # the last key revoked locks SKR, never opens it


async def test_scopes_and_tenants() -> None:
    access = AccessService(InMemoryApiKeyStore(), cache_seconds=0)
    reader = (await access.create_key("acme", "", [Scope.READ])).key
    admin = (await access.create_key("acme", "", [Scope.ADMIN])).key
    assert reader.allows(Scope.READ) and not reader.allows(Scope.INGEST)
    assert all(admin.allows(s) for s in Scope)
    with pytest.raises(InvalidInputError):
        await access.create_key("", "", [Scope.READ])
    with pytest.raises(InvalidInputError):
        await access.create_key("has space", "", [Scope.READ])
    with pytest.raises(InvalidInputError):
        await access.create_key("acme", "", [])


def test_the_rate_limiter_allows_a_burst_then_the_rate() -> None:
    clock = ManualClock(100.0)
    limiter = KeyRateLimiter(rate=2, burst=3, clock=clock)
    for _ in range(3):
        limiter.take("k")
    with pytest.raises(RateLimitedError) as limited:
        limiter.take("k")
    assert limited.value.retry_after_seconds >= 1
    limiter.take("other")  # per key
    clock.now += 0.5  # one token back at 2 a second
    limiter.take("k")
    with pytest.raises(RateLimitedError):
        limiter.take("k")
