"""Contract tests of the Embedder port: int8 ONNX MiniLM and the fake (the torch route's
agreement with ONNX is measured by bench/bench_embedder.py, where torch is installed)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest
from tests.fakes.fake_embedder import FakeEmbedder

from skr.adapters.onnx_embedder import (
    MiniLMTokenizer,
    OnnxMiniLMEmbedder,
    bundled_tokenizer_file,
    pad_batch,
)
from skr.domain.errors import DependencyError
from skr.ports.embedder import Embedder
from skr.runtime.priority_worker import BULK, INTERACTIVE
from skr.runtime.thread_priority import MAX_NICENESS, thread_niceness

pytestmark = pytest.mark.anyio

QUESTION = "How do I register a Flask blueprint?"
ANSWER = "Blueprints are registered on the application with register_blueprint."
UNRELATED = "The recipe needs two eggs."
# Common words, one WordPiece token each, so token counts equal word counts.
WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "while",
    "rain",
    "fell",
    "over",
    "green",
    "hills",
    "and",
    "quiet",
    "towns",
]


def words(count: int, offset: int = 0) -> str:
    return " ".join(WORDS[(offset + index) % len(WORDS)] for index in range(count))


MIXED_TEXTS = [
    words(3),
    QUESTION,
    words(120, 1),
    "x",
    ANSWER,
    words(40, 2),
    UNRELATED,
    words(300, 3),
    "",
    words(9, 4),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def onnx_embedder() -> Iterator[OnnxMiniLMEmbedder]:
    # A small batch so MIXED_TEXTS spans several sorted batches.
    embedder = OnnxMiniLMEmbedder(threads=2, batch_size=4)
    embedder.load()
    yield embedder
    embedder.close()


def cosines(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.asarray((left * right).sum(axis=1))


class EmbedderContract:
    """What every Embedder promises; subclasses provide the ``embedder`` fixture."""

    async def test_empty_input_gives_an_empty_matrix(self, embedder: Embedder) -> None:
        vectors = await embedder.embed([])
        assert vectors.shape == (0, embedder.dimensions)
        assert vectors.dtype == np.float32

    async def test_vectors_are_float32_unit_length(self, embedder: Embedder) -> None:
        vectors = await embedder.embed(MIXED_TEXTS)
        assert vectors.shape == (len(MIXED_TEXTS), embedder.dimensions)
        assert vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    async def test_batch_keeps_input_order(self, embedder: Embedder) -> None:
        together = await embedder.embed(MIXED_TEXTS)
        alone = np.vstack([await embedder.embed([text]) for text in MIXED_TEXTS])
        assert cosines(together, alone).min() > 0.999

    async def test_text_longer_than_the_window_is_accepted(self, embedder: Embedder) -> None:
        vectors = await embedder.embed([words(2000)])
        assert vectors.shape == (1, embedder.dimensions)

    def test_describes_itself(self, embedder: Embedder) -> None:
        assert embedder.model_id
        assert embedder.dimensions == 384
        assert 0 < embedder.max_tokens <= 256
        assert embedder.count_tokens("") == 0


class TestOnnxMiniLMEmbedder(EmbedderContract):
    @pytest.fixture
    def embedder(self, onnx_embedder: OnnxMiniLMEmbedder) -> Embedder:
        return onnx_embedder

    def test_window_and_identity(self, onnx_embedder: OnnxMiniLMEmbedder) -> None:
        assert onnx_embedder.model_id == "all-MiniLM-L6-v2/onnx-int8"
        assert onnx_embedder.max_tokens == 254

    async def test_related_sentences_score_higher(self, onnx_embedder: OnnxMiniLMEmbedder) -> None:
        question, answer, unrelated = await onnx_embedder.embed([QUESTION, ANSWER, UNRELATED])
        assert float(question @ answer) > float(question @ unrelated) + 0.3

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("", 0),
            ("   ", 0),
            ("Hello, world!", 4),
            ("naïve café", 2),
            (UNRELATED, 6),
            (ANSWER, 14),
        ],
    )
    def test_count_tokens_is_exact(
        self, onnx_embedder: OnnxMiniLMEmbedder, text: str, expected: int
    ) -> None:
        assert onnx_embedder.count_tokens(text) == expected

    def test_count_tokens_is_not_truncated(self, onnx_embedder: OnnxMiniLMEmbedder) -> None:
        assert onnx_embedder.count_tokens(words(600)) == 600

    async def test_text_over_the_window_is_truncated(
        self, onnx_embedder: OnnxMiniLMEmbedder
    ) -> None:
        long, kept, shorter = await onnx_embedder.embed([words(400), words(254), words(200)])
        assert float(long @ kept) > 0.9999
        assert float(long @ shorter) < 0.9999

    def test_encode_for_model_wraps_in_special_tokens(self) -> None:
        tokenizer = MiniLMTokenizer.bundled()
        (ids,) = tokenizer.encode_for_model([words(300)])
        assert len(ids) == 256
        assert (ids[0], ids[-1]) == (101, 102)
        assert tokenizer.encode_for_model([""]) == [[101, 102]]

    def test_token_offsets_span_the_tokens(self) -> None:
        tokenizer = MiniLMTokenizer.bundled()
        assert tokenizer.token_offsets("Hello, world!") == [(0, 5), (5, 6), (7, 12), (12, 13)]

    def test_batches_pad_to_their_own_longest_member(self) -> None:
        input_ids, attention_mask = pad_batch([[101, 7, 102], [101, 102]])
        assert input_ids.tolist() == [[101, 7, 102], [101, 102, 0]]
        assert attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]

    async def test_unloaded_or_closed_embedder_refuses_work(self) -> None:
        embedder = OnnxMiniLMEmbedder()
        with pytest.raises(RuntimeError):
            await embedder.embed(["text"])
        with pytest.raises(RuntimeError):
            embedder.count_tokens("text")
        embedder.load()
        embedder.close()
        with pytest.raises(RuntimeError):
            await embedder.embed(["text"])

    def test_broken_model_is_a_dependency_error(self, tmp_path: Path) -> None:
        broken = tmp_path / "model.onnx"
        broken.write_bytes(b"not an onnx model")
        with pytest.raises(DependencyError):
            OnnxMiniLMEmbedder(model_path=broken).load()

    def test_missing_tokenizer_is_a_dependency_error(self, tmp_path: Path) -> None:
        with pytest.raises(DependencyError):
            OnnxMiniLMEmbedder(tokenizer_path=tmp_path / "tokenizer.json").load()
        assert bundled_tokenizer_file().is_file()


class TestFakeEmbedder(EmbedderContract):
    @pytest.fixture
    def embedder(self) -> Embedder:
        return FakeEmbedder()

    async def test_shared_words_score_higher(self) -> None:
        fake = FakeEmbedder()
        first, second, third = await fake.embed(["red apple pie", "apple pie recipe", "blue car"])
        assert float(first @ second) > float(first @ third)
        assert fake.model_id == "fake-hash-384"
        assert fake.count_tokens("Hello, world!") == 4


def test_batches_respect_the_padded_token_cap() -> None:
    embedder = OnnxMiniLMEmbedder(threads=1, batch_size=32, max_batch_tokens=256)
    lengths = [10, 20, 30, 100, 120, 200, 256, 5]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches = embedder._batches(order, lengths)
    assert sorted(row for batch in batches for row in batch) == list(range(len(lengths)))
    for batch in batches:
        assert max(lengths[r] for r in batch) * len(batch) <= 256 or len(batch) == 1
    assert [[lengths[r] for r in b] for b in batches] == [[5, 10, 20, 30], [100, 120], [200], [256]]


async def test_batches_side_by_side_give_the_vectors_of_one_at_a_time(
    onnx_embedder: OnnxMiniLMEmbedder,
) -> None:
    serial = OnnxMiniLMEmbedder(threads=1, parallel_batches=1, batch_size=4)
    serial.load()
    try:
        expected = await serial.embed(MIXED_TEXTS * 3)
    finally:
        serial.close()
    together = await onnx_embedder.embed(MIXED_TEXTS * 3)  # 2 batches at a time, batches of 4
    assert cosines(together, expected).min() > 0.999


def test_parallel_batches_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="parallel_batches"):
        OnnxMiniLMEmbedder(parallel_batches=0)


@pytest.mark.parametrize("query_session", [True, False])
async def test_with_a_query_session_a_query_waits_for_no_batch(query_session: bool) -> None:
    """Every batch thread busy (held here): a query is still embedded on its own session;
    without one, it waits for a batch thread."""
    embedder = OnnxMiniLMEmbedder(parallel_batches=1, query_session=query_session)
    embedder.load()
    started, hold = threading.Event(), threading.Event()

    def occupy() -> None:
        started.set()
        hold.wait()

    assert embedder._worker is not None
    busy = embedder._worker.submit(BULK, occupy)
    assert started.wait(10)  # the one batch thread is taken
    try:
        with anyio.move_on_after(2) as waited:
            (vector,) = await embedder.embed(["how do I register a blueprint"])
        assert waited.cancelled_caught is not query_session
        if query_session:
            reference = OnnxMiniLMEmbedder.loaded(parallel_batches=1)
            try:
                (alone,) = await reference.embed(["how do I register a blueprint"])
            finally:
                reference.close()
            assert float(vector @ alone) > 0.999  # the same model, the same vector
    finally:
        hold.set()
        busy.result()
        embedder.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice: Linux")
@pytest.mark.parametrize("query_session", [True, False])
async def test_batches_run_niced_only_where_queries_have_a_session_of_their_own(
    query_session: bool,
) -> None:
    base = thread_niceness()
    embedder = OnnxMiniLMEmbedder(parallel_batches=1, query_session=query_session, batch_niceness=6)
    embedder.load()
    try:
        assert embedder._worker is not None
        on_batch_thread = embedder._worker.submit(BULK, thread_niceness).result(10)
        if embedder._query_worker is not None:
            assert embedder._query_worker.submit(INTERACTIVE, thread_niceness).result(10) == base
    finally:
        embedder.close()
    assert on_batch_thread == (min(MAX_NICENESS, base + 6) if query_session else base)
