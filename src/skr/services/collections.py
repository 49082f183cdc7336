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
