"""FakeEmbedder beyond the Embedder contract: the identity and token counts tests rely on."""

from __future__ import annotations

import pytest

from tests.fakes.fake_embedder import FakeEmbedder

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_shared_words_score_higher() -> None:
    fake = FakeEmbedder()
    first, second, third = await fake.embed(["red apple pie", "apple pie recipe", "blue car"])
    assert float(first @ second) > float(first @ third)
    assert fake.model_id == "fake-hash-384"
    assert fake.count_tokens("Hello, world!") == 4
