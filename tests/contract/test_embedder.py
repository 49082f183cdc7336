"""The Embedder contract: int8 ONNX MiniLM and the fake (the torch route's agreement with
ONNX is measured by bench/bench_embedder.py, where torch is installed)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from skr.adapters.onnx_embedder import OnnxMiniLMEmbedder
from skr.ports.embedder import Embedder
from tests.fakes.fake_embedder import FakeEmbedder
from tests.fixtures.kinds import class_id
from tests.fixtures.texts import MIXED_TEXTS, cosines, words

pytestmark = pytest.mark.anyio

EMBEDDER_KINDS = [OnnxMiniLMEmbedder, FakeEmbedder]


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


@pytest.fixture(params=EMBEDDER_KINDS, ids=class_id)
def embedder(request: pytest.FixtureRequest) -> Embedder:
    if request.param is OnnxMiniLMEmbedder:
        onnx: OnnxMiniLMEmbedder = request.getfixturevalue("onnx_embedder")
        return onnx
    return FakeEmbedder()


async def test_empty_input_gives_an_empty_matrix(embedder: Embedder) -> None:
    vectors = await embedder.embed([])
    assert vectors.shape == (0, embedder.dimensions)
    assert vectors.dtype == np.float32


async def test_vectors_are_float32_unit_length(embedder: Embedder) -> None:
    vectors = await embedder.embed(MIXED_TEXTS)
    assert vectors.shape == (len(MIXED_TEXTS), embedder.dimensions)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_batch_keeps_input_order(embedder: Embedder) -> None:
    together = await embedder.embed(MIXED_TEXTS)
    alone = np.vstack([await embedder.embed([text]) for text in MIXED_TEXTS])
    assert cosines(together, alone).min() > 0.999


async def test_text_longer_than_the_window_is_accepted(embedder: Embedder) -> None:
    vectors = await embedder.embed([words(2000)])
    assert vectors.shape == (1, embedder.dimensions)


def test_describes_itself(embedder: Embedder) -> None:
    assert embedder.model_id
    assert embedder.dimensions == 384
    assert 0 < embedder.max_tokens <= 256
    assert embedder.count_tokens("") == 0


async def test_the_same_text_gets_the_same_vector(embedder: Embedder) -> None:
    first, second = await embedder.embed(["apple pie recipe", "apple pie recipe"])
    (again,) = await embedder.embed(["apple pie recipe"])
    assert float(first @ second) > 0.9999
    assert float(first @ again) > 0.9999


async def test_texts_sharing_words_are_closer_than_texts_sharing_none(embedder: Embedder) -> None:
    first, second, third = await embedder.embed(["red apple pie", "apple pie recipe", "blue car"])
    assert float(first @ second) > float(first @ third)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 0), ("   ", 0), ("Hello, world!", 4), (words(9), 9), (words(600), 600)],
)
def test_count_tokens_counts_every_token_without_truncating(
    embedder: Embedder, text: str, expected: int
) -> None:
    assert embedder.count_tokens(text) == expected


async def test_tokens_past_the_window_are_not_read(embedder: Embedder) -> None:
    """``max_tokens`` is the longest input the model reads: what follows is left out, and
    what comes before it is not."""
    window = embedder.max_tokens
    tail = " ".join(["zebra"] * 40)
    (full,) = await embedder.embed([words(window)])
    (past,) = await embedder.embed([f"{words(window)} {tail}"])
    (short,) = await embedder.embed([words(window - 60)])
    (inside,) = await embedder.embed([f"{words(window - 60)} {tail}"])
    assert float(full @ past) > 0.9999
    assert float(short @ inside) < 0.99
