"""CollectionResolver on the fake store: found collections are remembered, missing ones
are asked for again, the default one is created on first use, and the memory is bounded."""

from __future__ import annotations

import pytest

from skr.domain.errors import NotFoundError
from skr.domain.models import DEFAULT_COLLECTION, Collection
from skr.services.collections import CollectionResolver
from tests.fakes.fake_store import InMemoryStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CountingStore(InMemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    async def get_collection(self, name: str, tenant: str) -> Collection:
        self.lookups += 1
        return await super().get_collection(name, tenant)


async def test_a_found_collection_is_not_looked_up_again() -> None:
    store = CountingStore()
    created = await store.create_collection("docs", "acme")
    resolver = CollectionResolver(store)
    assert await resolver.resolve("docs", "acme") == created
    assert await resolver.resolve("docs", "acme") == created
    assert store.lookups == 1


async def test_tenants_do_not_share_a_name() -> None:
    store = CountingStore()
    acme = await store.create_collection("docs", "acme")
    other = await store.create_collection("docs", "other")
    resolver = CollectionResolver(store)
    assert await resolver.resolve("docs", "acme") == acme
    assert await resolver.resolve("docs", "other") == other


async def test_a_missing_collection_is_looked_up_again_and_found_once_created() -> None:
    store = CountingStore()
    resolver = CollectionResolver(store)
    with pytest.raises(NotFoundError):
        await resolver.resolve("later", "acme")
    created = await store.create_collection("later", "acme")
    assert await resolver.resolve("later", "acme") == created
    assert store.lookups == 2


async def test_the_default_collection_is_created_on_first_use_once() -> None:
    store = CountingStore()
    resolver = CollectionResolver(store)
    first = await resolver.resolve(DEFAULT_COLLECTION, "acme")
    assert await resolver.resolve(DEFAULT_COLLECTION, "acme") == first
    assert [c.name for c in await store.list_collections("acme")] == [DEFAULT_COLLECTION]


async def test_it_forgets_the_oldest_beyond_its_bound() -> None:
    store = CountingStore()
    for name in ("a", "b", "c"):
        await store.create_collection(name, "acme")
    resolver = CollectionResolver(store, max_entries=2)
    for name in ("a", "b", "c"):
        await resolver.resolve(name, "acme")
    assert store.lookups == 3
    await resolver.resolve("c", "acme")
    await resolver.resolve("b", "acme")
    assert store.lookups == 3  # still remembered
    await resolver.resolve("a", "acme")
    assert store.lookups == 4  # forgotten, looked up again
