"""The Generator contract: OpenAIGenerator against the OpenAI-compatible test server on
loopback (tests/fakes/fake_llm_server.py), and the scripted fake."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import pytest

from skr.adapters.openai_generator import OpenAIGenerator
from skr.domain.errors import GenerationError
from skr.domain.models import Turn
from skr.ports.generator import Generator, NumberedPassage
from tests.fakes.fake_generator import ScriptedGenerator
from tests.fakes.fake_llm_server import FakeLLMServer
from tests.fixtures.kinds import class_id

pytestmark = pytest.mark.anyio

# Numbered from 3, as a caller may: an answer must cite the numbers it was given.
PASSAGES = [
    NumberedPassage(3, "France", "https://example.org/france", "Paris is the capital. It is big."),
    NumberedPassage(7, "Spain", "https://example.org/spain", "Madrid is the capital of Spain."),
]
QUESTION = "What is the capital of France?"
HISTORY = [
    Turn("user", "How do I register a blueprint?"),
    Turn("assistant", "Call app.register_blueprint(bp) [1]."),
]
FOLLOW_UP = "and how do I give it a URL prefix?"
GENERATOR_KINDS = [OpenAIGenerator, ScriptedGenerator]
_MARKER = re.compile(r"\[(\d+)\]")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def llm_server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
async def openai_generator(llm_server: FakeLLMServer) -> AsyncIterator[OpenAIGenerator]:
    llm_server.reset()
    generator = OpenAIGenerator(
        base_url=llm_server.base_url,
        api_key="test-key",
        model="fake-model",
        timeout_seconds=1.0,
        max_retries=1,
        breaker_failures=50,
        breaker_reset_seconds=0.3,
        backoff_initial_seconds=0.01,
        backoff_max_seconds=0.05,
    )
    async with generator:
        yield generator


@pytest.fixture(params=GENERATOR_KINDS, ids=class_id)
def generator(request: pytest.FixtureRequest) -> Generator:
    if request.param is OpenAIGenerator:
        real: OpenAIGenerator = request.getfixturevalue("openai_generator")
        return real
    return ScriptedGenerator()


@pytest.fixture(params=GENERATOR_KINDS, ids=class_id)
def failing_generator(request: pytest.FixtureRequest) -> Generator:
    """A generator whose model fails: the server answers 500, or the fake is told to fail."""
    if request.param is OpenAIGenerator:
        real: OpenAIGenerator = request.getfixturevalue("openai_generator")
        server: FakeLLMServer = request.getfixturevalue("llm_server")
        server.mode = "fail"
        return real
    return ScriptedGenerator(fail=True)


async def test_the_answer_cites_only_passages_it_was_given(generator: Generator) -> None:
    answer = await generator.generate(QUESTION, PASSAGES)
    cited = {int(n) for n in _MARKER.findall(answer)}
    assert answer.strip()
    assert cited, answer
    assert cited <= {p.n for p in PASSAGES}, answer


async def test_the_answer_comes_from_the_passages(generator: Generator) -> None:
    answer = await generator.generate(QUESTION, PASSAGES)
    assert "Paris is the capital" in answer


async def test_a_failing_model_is_a_generation_error(failing_generator: Generator) -> None:
    with pytest.raises(GenerationError) as caught:
        await failing_generator.generate(QUESTION, PASSAGES)
    assert caught.value.detail


async def test_a_rewrite_is_one_line_that_keeps_the_question(generator: Generator) -> None:
    rewritten = await generator.rewrite(FOLLOW_UP, HISTORY, 2.0)
    assert rewritten.strip() and "\n" not in rewritten
    assert "prefix" in rewritten


async def test_a_rewrite_sees_the_earlier_turns(generator: Generator) -> None:
    rewritten = await generator.rewrite(FOLLOW_UP, HISTORY, 2.0)
    assert "blueprint" in rewritten.lower()


async def test_a_failing_rewrite_is_a_generation_error(failing_generator: Generator) -> None:
    with pytest.raises(GenerationError) as caught:
        await failing_generator.rewrite(FOLLOW_UP, HISTORY, 2.0)
    assert caught.value.detail
