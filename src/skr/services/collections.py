"""Collections as requests name them: the default one always exists."""

from __future__ import annotations

from skr.domain.errors import NotFoundError
from skr.domain.models import DEFAULT_COLLECTION, Collection
from skr.ports.store import Store


async def resolve_collection(store: Store, name: str, tenant: str) -> Collection:
    """The tenant's collection called ``name``; the default one is created on first use."""
    try:
        return await store.get_collection(name, tenant)
    except NotFoundError:
        if name != DEFAULT_COLLECTION:
            raise
        return await store.ensure_collection(name, tenant)


class CollectionResolver:
    """:func:`resolve_collection`, remembering what it found: nearly every request names a
    collection, and a collection, once created, is never renamed, changed or deleted, so
    a found one stays true. A name not found is looked up again next time (it may be
    created meanwhile). Holds at most ``max_entries``; the oldest is forgotten first."""

    def __init__(self, store: Store, max_entries: int = 10_000) -> None:
        self._store = store
        self._max_entries = max_entries
        self._found: dict[tuple[str, str], Collection] = {}

    async def resolve(self, name: str, tenant: str) -> Collection:
        key = (tenant, name)
        found = self._found.get(key)
        if found is None:
            found = await resolve_collection(self._store, name, tenant)
            if len(self._found) >= self._max_entries:
                del self._found[next(iter(self._found))]
            self._found[key] = found
        return found
