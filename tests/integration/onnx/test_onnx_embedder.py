"""OnnxMiniLMEmbedder beyond the Embedder contract: the exact tokenizer, truncation, batching,
the query session and thread priority (the contract is tests/contract/test_embedder.py)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from skr.adapters.minilm_wordpiece import MiniLMTokenizer, bundled_tokenizer_file
from skr.adapters.onnx_embedder import OnnxMiniLMEmbedder, pad_batch
from skr.domain.errors import DependencyError
from skr.runtime.priority_worker import BULK, INTERACTIVE
from skr.runtime.thread_priority import MAX_NICENESS, thread_niceness
from tests.fixtures.texts import ANSWER, MIXED_TEXTS, QUESTION, UNRELATED, cosines, words

pytestmark = pytest.mark.anyio


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


class TestOnnxMiniLMEmbedder:
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
