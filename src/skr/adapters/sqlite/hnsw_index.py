"""A local HNSW index (hnswlib) per collection, derived from the vectors kept in SQLite.

The index is never the source of truth. Each one is saved beside the database
with the collection's vector *generation* it reflects; a missing file, a
different generation or a different model means the file is stale, and the
index is rebuilt from SQLite. A crash between a SQLite commit and an index save
therefore costs a rebuild, never data.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np

from skr.ports.vectors import Vector

logger = logging.getLogger(__name__)

_INITIAL_CAPACITY = 1024


@dataclass(frozen=True, slots=True)
class HnswParams:
    m: int = 16
    ef_construction: int = 64
    ef_search: int = 80


class HnswIndex:
    """One collection's index. Thread-safe: a lock guards every call into hnswlib."""

    def __init__(self, dimensions: int, params: HnswParams) -> None:
        self._dimensions = dimensions
        self._params = params
        self._lock = threading.Lock()
        self._index = self._empty(_INITIAL_CAPACITY)
        self._live: set[int] = set()
        self.dirty = False

    def _empty(self, capacity: int) -> hnswlib.Index:
        index = hnswlib.Index(space="cosine", dim=self._dimensions)
        index.init_index(
            max_elements=capacity, ef_construction=self._params.ef_construction, M=self._params.m
        )
        index.set_ef(self._params.ef_search)
        return index

    def __len__(self) -> int:
        return len(self._live)

    def add(self, labels: Sequence[int], vectors: Vector) -> None:
        if not labels:
            return
        with self._lock:
            needed = self._index.get_current_count() + len(labels)
            capacity = self._index.get_max_elements()
            if needed > capacity:
                self._index.resize_index(max(needed, capacity * 2))
            self._index.add_items(vectors, np.asarray(labels, dtype=np.int64))
            self._live.update(labels)
            self.dirty = True

    def remove(self, labels: Iterable[int]) -> None:
        with self._lock:
            for label in labels:
                if label in self._live:
                    self._index.mark_deleted(label)
                    self._live.discard(label)
                    self.dirty = True

    def search(self, vector: Vector, k: int) -> list[tuple[int, float]]:
        """Labels and cosine similarities of the ``k`` nearest vectors, best first."""
        with self._lock:
            k = min(k, len(self._live))
            if k == 0:
                return []
            ef = max(self._params.ef_search, k)
            while True:
                self._index.set_ef(ef)
                try:
                    labels, distances = self._index.knn_query(vector.reshape(1, -1), k=k)
                    break
                except RuntimeError:
                    # Many deleted neighbours can starve the search; widen it.
                    if ef >= len(self._live) + k:
                        raise
                    ef *= 4
        return [
            (int(label), 1.0 - float(distance))
            for label, distance in zip(labels[0], distances[0], strict=True)
        ]

    def save(self, path: Path, generation: int, model_id: str) -> None:
        """Write the index, then its sidecar; the sidecar is written last and atomically,
        so a crash mid-save leaves a sidecar that does not match, and a rebuild."""
        with self._lock:
            tmp = path.with_suffix(".tmp")
            self._index.save_index(str(tmp))
            tmp.replace(path)
            sidecar = {"generation": generation, "model_id": model_id, "count": len(self._live)}
            _atomic_write_text(_sidecar_path(path), json.dumps(sidecar))
            self.dirty = False

    @classmethod
    def load(
        cls, path: Path, dimensions: int, params: HnswParams, generation: int, model_id: str
    ) -> HnswIndex | None:
        """The saved index when it reflects ``generation`` of ``model_id``; else None."""
        sidecar_path = _sidecar_path(path)
        if not path.exists() or not sidecar_path.exists():
            return None
        try:
            sidecar = json.loads(sidecar_path.read_text())
        except (OSError, ValueError):
            return None
        if sidecar.get("generation") != generation or sidecar.get("model_id") != model_id:
            return None
        instance = cls(dimensions, params)
        try:
            index = hnswlib.Index(space="cosine", dim=dimensions)
            index.load_index(str(path))
        except (RuntimeError, OSError) as exc:
            logger.warning("index file %s unreadable (%s); rebuilding", path, exc)
            return None
        index.set_ef(params.ef_search)
        labels = {int(x) for x in index.get_ids_list()}
        deleted = _deleted_labels(index, labels)
        instance._index = index
        instance._live = labels - deleted
        if len(instance._live) != sidecar.get("count"):
            return None
        return instance

    @classmethod
    def build(
        cls, dimensions: int, params: HnswParams, rows: Iterable[tuple[int, Vector]]
    ) -> HnswIndex:
        instance = cls(dimensions, params)
        batch_labels: list[int] = []
        batch_vectors: list[Vector] = []
        for label, vector in rows:
            batch_labels.append(label)
            batch_vectors.append(vector)
            if len(batch_labels) >= 4096:
                instance.add(batch_labels, np.vstack(batch_vectors).astype(np.float32))
                batch_labels, batch_vectors = [], []
        if batch_labels:
            instance.add(batch_labels, np.vstack(batch_vectors).astype(np.float32))
        return instance


def _deleted_labels(index: hnswlib.Index, labels: set[int]) -> set[int]:
    deleted: set[int] = set()
    for label in labels:
        try:
            index.get_items([label])
        except RuntimeError:
            deleted.add(label)
    return deleted


def _sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(path)
