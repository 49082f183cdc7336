"""Search: keyword, vector, or both fused (the default; see ``domain.ranking``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Literal

import numpy as np

from skr.domain.errors import InvalidInputError
from skr.domain.models import Chunk, ChunkKind, Collection, Fusion, Hit, HybridQuery, ScoredId
from skr.domain.ranking import DEFAULT_KEYWORD_WEIGHT
from skr.domain.vectors import Vector
from skr.ports.cache import Cache
from skr.ports.embedder import Embedder
from skr.ports.store import Store

MAX_QUERY_CHARS = 2000
MAX_K = 100
MAX_DOCUMENT_DEPTH = 2000
"""The most chunks :meth:`SearchService.search_documents` reads to find its documents."""

SearchMode = Literal["hybrid", "keyword", "vector"]

Admit = Callable[[], AbstractAsyncContextManager[object]]
"""Admission for the work a cached answer does not need (the entrypoint's gate): enters
when the search may run, or raises ``OverloadedError``."""


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
        fusion: Fusion = Fusion.SCORE,
        keyword_weight: float = DEFAULT_KEYWORD_WEIGHT,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._cache = cache
        self._candidates = candidates
        self._rrf_k = rrf_k
        self._ttl = cache_ttl_seconds
        self._fusion = fusion
        self._weights = (keyword_weight, 1.0 - keyword_weight)
        # processes ranking differently may share one cache: their results must not mix
        self._ranking = f"{fusion.value}/{keyword_weight:g}/{candidates}/{rrf_k}"

    async def embed_query(self, query: str) -> Vector:
        key = f"qe:{self._embedder.model_id}:{_digest(query)}"
        cached = await self._cache.get(key)
        if cached is not None:
            return np.frombuffer(cached, dtype=np.float32).copy()
        vector: Vector = (await self._embedder.embed([query]))[0].astype(np.float32)
        await self._cache.set(key, vector.tobytes(), self._ttl)
        return vector

    async def search(
        self,
        collection: Collection,
        query: str,
        k: int,
        kind: ChunkKind | None,
        *,
        mode: SearchMode = "hybrid",
        admit: Admit | None = None,
    ) -> list[Hit]:
        """The best ``k`` chunks: by full-text relevance, by vector similarity, or both
        fused (``mode``), best first. A cached result is returned at once; only a search
        that must run goes through ``admit``, so cheap answers never queue behind
        expensive ones."""
        query = _checked(query, k)
        generation = await self._cache.generation(collection.id)
        key = f"s:{collection.id}:{generation}:{self._ranking}:{mode}:{kind}:{k}:{_digest(query)}"
        cached = await self._cache.get(key)
        if cached is not None:
            return [_hit_from_json(h) for h in json.loads(cached)]
        async with admit() if admit is not None else nullcontext():
            if mode == "hybrid":  # the ranking and its chunks in one visit to the store
                vector = await self.embed_query(query)
                scored = await self._store.hybrid_search_chunks(
                    collection.id, self._hybrid_query(query, vector, k, kind)
                )
                hits = [_hit(chunk, score) for chunk, score in scored]
            else:
                hits = await self._hits(await self._ranked(collection.id, query, k, kind, mode))
        await self._cache.set(key, json.dumps([_hit_to_json(h) for h in hits]).encode(), self._ttl)
        return hits

    async def search_documents(
        self,
        collection: Collection,
        query: str,
        k: int,
        kind: ChunkKind | None = None,
        *,
        mode: SearchMode = "hybrid",
    ) -> list[Hit]:
        """The best chunk of each of the best ``k`` documents, best first: the ranking of
        :meth:`search`, read deep enough (up to ``MAX_DOCUMENT_DEPTH`` chunks) to find ``k``
        documents when they have several chunks each. Not cached."""
        query = _checked(query, k)
        depth = min(4 * k, MAX_DOCUMENT_DEPTH)
        while True:
            ranked = await self._ranked(collection.id, query, depth, kind, mode)
            best: dict[str, Hit] = {}
            for hit in await self._hits(ranked):
                best.setdefault(hit.document_id, hit)
            if len(best) >= k or len(ranked) < depth or depth >= MAX_DOCUMENT_DEPTH:
                return list(best.values())[:k]
            depth = min(2 * depth, MAX_DOCUMENT_DEPTH)

    async def _ranked(
        self, collection_id: str, query: str, k: int, kind: ChunkKind | None, mode: SearchMode
    ) -> list[ScoredId]:
        if mode == "keyword":
            return await self._store.keyword_search(collection_id, query, k, kind)
        vector = await self.embed_query(query)
        if mode == "vector":
            return await self._store.vector_search(collection_id, vector, k, kind)
        return await self._store.hybrid_search(
            collection_id, self._hybrid_query(query, vector, k, kind)
        )

    def _hybrid_query(
        self, query: str, vector: Vector, k: int, kind: ChunkKind | None
    ) -> HybridQuery:
        candidates = max(self._candidates, k)
        return HybridQuery(
            query, vector, k, kind, candidates, self._weights, self._rrf_k, self._fusion
        )

    async def _hits(self, ranked: list[ScoredId]) -> list[Hit]:
        chunks = await self._store.get_chunks([item.chunk_id for item in ranked])
        by_id = {c.id: c for c in chunks}
        return [_hit(by_id[item.chunk_id], item.score) for item in ranked if item.chunk_id in by_id]


def _hit(chunk: Chunk, score: float) -> Hit:
    return Hit(
        id=chunk.id,
        document_id=chunk.document_id,
        url=chunk.url,
        title=chunk.title,
        text=chunk.text,
        score=score,
        kind=chunk.kind,
        image_url=chunk.image.src if chunk.image else None,
        section=chunk.heading_path,
    )


def _checked(query: str, k: int) -> str:
    """The query without surrounding blanks, once it and ``k`` are within limits."""
    query = query.strip()
    if not query:
        raise InvalidInputError("the query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInputError(f"the query is longer than {MAX_QUERY_CHARS} characters")
    if not 1 <= k <= MAX_K:
        raise InvalidInputError(f"k must be between 1 and {MAX_K}")
    return query


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
        "section": hit.section,
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
        section=str(data.get("section", "")),
    )
