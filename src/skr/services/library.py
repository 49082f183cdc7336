"""The library: a tenant's collections, documents and stored passages, read and removed
through one set of tenancy rules whichever entrypoint asks."""

from __future__ import annotations

from skr.domain.errors import NotFoundError
from skr.domain.models import Chunk, Collection, Document
from skr.ports.store import Store
from skr.services.collections import CollectionResolver
from skr.services.ingest import IngestService


class LibraryService:
    def __init__(
        self, *, store: Store, collections: CollectionResolver, ingest: IngestService
    ) -> None:
        self._store = store
        self._collections = collections
        self._ingest = ingest

    async def list_collections(self, tenant: str) -> list[Collection]:
        return await self._store.list_collections(tenant)

    async def create_collection(self, name: str, tenant: str) -> Collection:
        return await self._store.create_collection(name, tenant)

    async def collection(self, name: str, tenant: str) -> Collection:
        """The tenant's collection called ``name`` (the default one always exists)."""
        return await self._collections.resolve(name, tenant)

    async def list_documents(
        self, collection: str, tenant: str, *, limit: int, cursor: str | None
    ) -> tuple[list[Document], str | None]:
        """A page of the collection's documents, and the cursor of the next (None: last)."""
        found = await self._collections.resolve(collection, tenant)
        return await self._store.list_documents(found.id, limit, cursor)

    async def get_document(self, document_id: str, tenant: str) -> Document:
        return await self._store.get_document(document_id, tenant)

    async def delete_document(self, document_id: str, tenant: str) -> None:
        """Delete the tenant's document with its chunks, images and vectors."""
        document = await self._store.get_document(document_id, tenant)
        await self._ingest.remove_document(document, tenant)

    async def get_chunk(self, chunk_id: str, tenant: str) -> Chunk:
        """One stored chunk (or image) of the tenant's, e.g. the passage a citation quotes;
        another tenant's is as unknown as a made-up id."""
        found = await self._store.get_chunks([chunk_id])
        if not found:
            raise NotFoundError(f"there is no chunk with id {chunk_id!r}")
        await self._store.get_document(found[0].document_id, tenant)
        return found[0]
