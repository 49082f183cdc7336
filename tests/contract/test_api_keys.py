"""The ApiKeyStore contract, against SQLite, PostgreSQL and the in-memory fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from skr.domain.access import ApiKey, Scope
from skr.domain.errors import ConflictError, NotFoundError
from skr.ports.api_keys import ApiKeyStore
from tests.fixtures.kinds import class_id
from tests.fixtures.stores import API_KEY_KINDS, make_api_keys

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=API_KEY_KINDS, ids=class_id)
async def keys(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ApiKeyStore]:
    async with make_api_keys(request.param, tmp_path) as store:
        yield store


def key(key_id: str, tenant: str = "acme", *scopes: Scope) -> ApiKey:
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return ApiKey(key_id, tenant, f"key {key_id}", frozenset(scopes or {Scope.READ}), created)


async def test_keys_are_stored_found_listed_and_revoked(keys: ApiKeyStore) -> None:
    assert await keys.count_active_keys() == 0
    await keys.add_key(key("a1", "acme", Scope.READ, Scope.INGEST), "hash-a1")
    await keys.add_key(key("b2", "globex", Scope.ADMIN), "hash-b2")
    found = await keys.find_key("a1")
    assert found is not None
    stored, secret_hash = found
    assert secret_hash == "hash-a1"
    assert (stored.tenant, stored.name, stored.scopes) == (
        "acme",
        "key a1",
        frozenset({Scope.READ, Scope.INGEST}),
    )
    assert stored.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert stored.active
    assert await keys.find_key("nope") is None
    assert [k.id for k in await keys.list_keys()] == ["a1", "b2"]
    assert await keys.count_active_keys() == 2
    revoked = await keys.revoke_key("a1")
    assert not revoked.active and revoked.revoked_at is not None
    again = await keys.revoke_key("a1")
    assert again.revoked_at == revoked.revoked_at  # the first revocation stands
    assert await keys.count_active_keys() == 1
    refound = await keys.find_key("a1")
    assert refound is not None and not refound[0].active


async def test_ids_are_unique_and_unknown_ids_cannot_be_revoked(keys: ApiKeyStore) -> None:
    await keys.add_key(key("a1"), "h")
    with pytest.raises(ConflictError):
        await keys.add_key(key("a1", "globex"), "other")
    with pytest.raises(NotFoundError):
        await keys.revoke_key("missing")
