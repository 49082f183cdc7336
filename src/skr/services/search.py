"""Hybrid search: keyword and vector results fused by weighted reciprocal rank."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from skr.domain.errors import InvalidInputError
from skr.domain.models import ChunkKind, Collection, Hit, HybridQuery
from skr.domain.vectors import Vector
from skr.ports.cache import Cache
from skr.ports.embedder import Embedder
from skr.ports.store import Store

MAX_QUERY_CHARS = 2000
MAX_K = 100


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class SearchService:
    """Finds the chunks and images of one collection that best match a query."""

    def __init__(
        self,
        *,
        store: Store,
        embedder: Embedder,
        cache: Cache,
        candidates: int,
        rrf_k: int,
        cache_ttl_seconds: float,
        keyword_weight: float = 1.0,
        vector_weight: float = 1.0,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._cache = cache
        self._candidates = candidates
        self._rrf_k = rrf_k
        self._ttl = cache_ttl_seconds
        self._weights = (keyword_weight, vector_weight)

    async def embed_query(self, query: str) -> Vector:
        key = f"qe:{self._embedder.model_id}:{_digest(query)}"
        cached = await self._cache.get(key)
        if cached is not None:
            return np.frombuffer(cached, dtype=np.float32).copy()
        vector: Vector = (await self._embedder.embed([query]))[0].astype(np.float32)
        await self._cache.set(key, vector.tobytes(), self._ttl)
        return vector

    async def search(
        self, collection: Collection, query: str, k: int, kind: ChunkKind | None
    ) -> list[Hit]:
        query = query.strip()
        if not query:
            raise InvalidInputError("the query is empty")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidInputError(f"the query is longer than {MAX_QUERY_CHARS} characters")
        if not 1 <= k <= MAX_K:
            raise InvalidInputError(f"k must be between 1 and {MAX_K}")
        generation = await self._cache.generation(collection.id)
        key = f"s:{collection.id}:{generation}:{kind}:{k}:{_digest(query)}"
        cached = await self._cache.get(key)
        if cached is not None:
            return [_hit_from_json(h) for h in json.loads(cached)]
        hits = await self._search_uncached(collection.id, query, k, kind)
        await self._cache.set(key, json.dumps([_hit_to_json(h) for h in hits]).encode(), self._ttl)
        return hits

    async def _search_uncached(
        self, collection_id: str, query: str, k: int, kind: ChunkKind | None
    ) -> list[Hit]:
        candidates = max(self._candidates, k)
        vector = await self.embed_query(query)
        fused = await self._store.hybrid_search(
            collection_id,
            HybridQuery(query, vector, k, kind, candidates, self._weights, self._rrf_k),
        )
        chunks = await self._store.get_chunks([f.chunk_id for f in fused])
        by_id = {c.id: c for c in chunks}
        hits: list[Hit] = []
        for item in fused:
            chunk = by_id.get(item.chunk_id)
            if chunk is None:
                continue
            hits.append(
                Hit(
                    id=chunk.id,
                    document_id=chunk.document_id,
                    url=chunk.url,
                    title=chunk.title,
                    text=chunk.text,
                    score=item.score,
                    kind=chunk.kind,
                    image_url=chunk.image.src if chunk.image else None,
                )
            )
        return hits


def _hit_to_json(hit: Hit) -> dict[str, object]:
    return {
        "id": hit.id,
        "document_id": hit.document_id,
        "url": hit.url,
        "title": hit.title,
        "text": hit.text,
        "score": hit.score,
        "kind": hit.kind.value,
        "image_url": hit.image_url,
    }


def _hit_from_json(data: dict[str, object]) -> Hit:
    return Hit(
        id=str(data["id"]),
        document_id=str(data["document_id"]),
        url=str(data["url"]),
        title=str(data["title"]),
        text=str(data["text"]),
        score=float(data["score"]),  # type: ignore[arg-type]
        kind=ChunkKind(str(data["kind"])),
        image_url=None if data["image_url"] is None else str(data["image_url"]),
    )
