"""Routes over stored content: documents and collections."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from skr.domain.models import Collection, Document
from skr.entrypoints.api.dependencies import LibraryDep, TenantDep, get_caller
from skr.entrypoints.api.schemas import (
    COLLECTION_NAME,
    ChunkRead,
    CollectionCreate,
    CollectionRead,
    CollectionsPage,
    DocumentRead,
    DocumentsPage,
    ImageRead,
    problem_responses,
)

router = APIRouter(
    prefix="/v1",
    tags=["library"],
    dependencies=[Depends(get_caller)],
    responses=problem_responses(401, 403, 422, 429, 503),
)

DocumentId = Annotated[str, Path(min_length=1, max_length=64)]


def document_read(document: Document) -> DocumentRead:
    return DocumentRead(
        id=document.id,
        collection_id=document.collection_id,
        url=document.url,
        final_url=document.final_url,
        title=document.title,
        content_hash=document.content_hash,
        fetched_at=document.fetched_at,
        status=document.status,
        chunk_count=document.chunk_count,
        image_count=document.image_count,
    )


def collection_read(collection: Collection) -> CollectionRead:
    return CollectionRead(id=collection.id, name=collection.name, created_at=collection.created_at)


@router.get("/documents", response_model=DocumentsPage, responses=problem_responses(404))
async def list_documents(
    library: LibraryDep,
    tenant: TenantDep,
    collection: Annotated[str, Query(pattern=COLLECTION_NAME)] = "default",
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> DocumentsPage:
    documents, next_cursor = await library.list_documents(
        collection, tenant, limit=limit, cursor=cursor
    )
    return DocumentsPage(documents=[document_read(d) for d in documents], next_cursor=next_cursor)


@router.get(
    "/documents/{document_id}", response_model=DocumentRead, responses=problem_responses(404)
)
async def get_document(
    document_id: DocumentId, library: LibraryDep, tenant: TenantDep
) -> DocumentRead:
    return document_read(await library.get_document(document_id, tenant))


@router.delete("/documents/{document_id}", status_code=204, responses=problem_responses(404))
async def delete_document(
    document_id: DocumentId, library: LibraryDep, tenant: TenantDep
) -> Response:
    """Delete a document with its chunks, images and vectors."""
    await library.delete_document(document_id, tenant)
    return Response(status_code=204)


@router.get("/collections", response_model=CollectionsPage)
async def list_collections(library: LibraryDep, tenant: TenantDep) -> CollectionsPage:
    collections = await library.list_collections(tenant)
    return CollectionsPage(collections=[collection_read(c) for c in collections])


@router.post(
    "/collections",
    status_code=201,
    response_model=CollectionRead,
    responses=problem_responses(400, 409, 413),
)
async def create_collection(
    body: CollectionCreate, library: LibraryDep, tenant: TenantDep
) -> CollectionRead:
    return collection_read(await library.create_collection(body.name, tenant))


@router.get("/chunks/{chunk_id}", response_model=ChunkRead, responses=problem_responses(404))
async def get_chunk(chunk_id: DocumentId, library: LibraryDep, tenant: TenantDep) -> ChunkRead:
    """One stored chunk (or image), e.g. the passage a citation quotes."""
    chunk = await library.get_chunk(chunk_id, tenant)
    image = chunk.image
    return ChunkRead(
        id=chunk.id,
        document_id=chunk.document_id,
        collection_id=chunk.collection_id,
        url=chunk.url,
        title=chunk.title,
        heading_path=chunk.heading_path,
        ordinal=chunk.ordinal,
        kind=chunk.kind.value,
        text=chunk.text,
        token_count=chunk.token_count,
        image=None
        if image is None
        else ImageRead(
            src=image.src,
            alt=image.alt,
            title=image.title,
            caption=image.caption,
            surrounding_text=image.surrounding_text,
            ocr_text=image.ocr_text,
        ),
    )
