"""OpenAIGenerator against a real OpenAI-compatible server on loopback: answers and resilience."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import anyio
import openai
import pytest

from skr.adapters.openai_generator import SYSTEM_PROMPT, OpenAIGenerator
from skr.domain.errors import GenerationError
from skr.domain.models import Turn
from skr.ports.generator import Generator, NumberedPassage
from tests.fakes.fake_clock import ManualClock
from tests.fakes.fake_llm_server import FakeLLMServer

PASSAGES = [
    NumberedPassage(1, "France", "https://example.org/france", "Paris is the capital. It is big."),
    NumberedPassage(2, "Spain", "https://example.org/spain", "Madrid is the capital of Spain."),
]
QUESTION = "What is the capital of France?"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def module_server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def server(module_server: FakeLLMServer) -> FakeLLMServer:
    module_server.reset()
    return module_server


def make_generator(base_url: str, **overrides: Any) -> OpenAIGenerator:
    options: dict[str, Any] = {
        "base_url": base_url,
        "api_key": "test-key",
        "model": "fake-model",
        "timeout_seconds": 1.0,
        "max_retries": 2,
        "breaker_failures": 50,
        "breaker_reset_seconds": 0.3,
        "backoff_initial_seconds": 0.01,
        "backoff_max_seconds": 0.05,
    }
    options.update(overrides)
    return OpenAIGenerator(**options)


def state_of(generator: OpenAIGenerator) -> str:
    """The breaker state, read afresh (mypy would otherwise narrow the property)."""
    return generator.breaker_state


async def expect_failure(generator: OpenAIGenerator) -> GenerationError:
    with pytest.raises(GenerationError) as caught:
        await generator.generate(QUESTION, PASSAGES)
    return caught.value


@pytest.mark.anyio
async def test_answer_cites_the_passages_it_was_given(server: FakeLLMServer) -> None:
    generator: Generator
    async with make_generator(server.base_url) as generator:
        answer = await generator.generate(QUESTION, PASSAGES)

    assert answer == "According to the sources, Paris is the capital [1]."
    assert server.request_count == 1
    sent = server.last_request
    assert sent is not None
    assert sent["model"] == "fake-model"
    assert sent["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    user = sent["messages"][1]["content"]
    assert "[1] France (https://example.org/france)\nParis is the capital. It is big." in user
    assert "[2] Spain (https://example.org/spain)\nMadrid" in user
    assert user.rstrip().endswith(QUESTION)


@pytest.mark.anyio
async def test_client_is_made_on_first_use_and_closed(server: FakeLLMServer) -> None:
    generator = make_generator(server.base_url)
    assert state_of(generator) == "closed"
    assert await generator.generate(QUESTION, PASSAGES)
    await generator.aclose()
    await generator.aclose()  # closing twice is harmless


@pytest.mark.anyio
async def test_server_errors_are_retried_then_fail(server: FakeLLMServer) -> None:
    server.mode = "fail"
    async with make_generator(server.base_url, max_retries=2) as generator:
        error = await expect_failure(generator)

    assert server.request_count == 3
    assert "HTTP 500" in error.detail
    assert "3 attempts" in error.detail
    assert isinstance(error.__cause__, openai.InternalServerError)


@pytest.mark.anyio
async def test_rate_limits_are_retried_after_the_asked_delay(server: FakeLLMServer) -> None:
    server.mode, server.retry_after_seconds = "429", 0.02
    waits: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        waits.append(seconds)

    async with make_generator(server.base_url, sleep=recording_sleep) as generator:
        error = await expect_failure(generator)

    assert server.request_count == 3
    assert waits == [0.02, 0.02]
    assert "429" in error.detail
    assert isinstance(error.__cause__, openai.RateLimitError)


@pytest.mark.anyio
async def test_rate_limit_asking_longer_than_the_backoff_cap_stops(server: FakeLLMServer) -> None:
    server.mode, server.retry_after_seconds = "429", 60
    async with make_generator(server.base_url) as generator:
        started = time.monotonic()
        error = await expect_failure(generator)

    assert time.monotonic() - started < 1
    assert server.request_count == 1
    assert "1 attempt" in error.detail


@pytest.mark.anyio
async def test_rejected_requests_are_not_retried(server: FakeLLMServer) -> None:
    server.mode = "400"
    async with make_generator(server.base_url, breaker_failures=1) as generator:
        error = await expect_failure(generator)
        assert state_of(generator) == "closed"  # the server is fine; the request was not

    assert server.request_count == 1
    assert "HTTP 400" in error.detail
    assert isinstance(error.__cause__, openai.BadRequestError)


@pytest.mark.anyio
async def test_empty_answers_fail_without_retry(server: FakeLLMServer) -> None:
    server.mode = "empty"
    async with make_generator(server.base_url) as generator:
        error = await expect_failure(generator)

    assert server.request_count == 1
    assert "empty" in error.detail


@pytest.mark.anyio
async def test_slow_server_fails_within_the_timeouts(server: FakeLLMServer) -> None:
    server.mode, server.delay_seconds = "slow", 3.0
    async with make_generator(server.base_url, timeout_seconds=0.2, max_retries=1) as generator:
        started = time.monotonic()
        error = await expect_failure(generator)
        elapsed = time.monotonic() - started

    assert 0.35 < elapsed < 1.0
    assert server.request_count == 2
    assert "in time" in error.detail


@pytest.mark.anyio
async def test_total_deadline_caps_all_retries(server: FakeLLMServer) -> None:
    server.mode, server.delay_seconds = "slow", 3.0
    generator = make_generator(
        server.base_url, timeout_seconds=0.25, max_retries=10, deadline_seconds=0.4
    )
    async with generator:
        started = time.monotonic()
        error = await expect_failure(generator)
        elapsed = time.monotonic() - started

    assert elapsed < 0.8
    assert server.request_count == 2
    assert "in time" in error.detail


@pytest.mark.anyio
async def test_unreachable_server_fails_after_retries() -> None:
    with socket.socket() as probe:  # a loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with make_generator(f"http://127.0.0.1:{port}/v1") as generator:
        error = await expect_failure(generator)

    assert "could not be reached" in error.detail
    assert "3 attempts" in error.detail
    assert isinstance(error.__cause__, openai.APIConnectionError)


@pytest.mark.anyio
async def test_circuit_opens_and_then_spares_the_server(server: FakeLLMServer) -> None:
    server.mode = "fail"
    async with make_generator(server.base_url, max_retries=0, breaker_failures=3) as generator:
        for _ in range(3):
            await expect_failure(generator)
        assert state_of(generator) == "open"
        assert server.request_count == 3

        started = time.monotonic()
        error = await expect_failure(generator)

    assert time.monotonic() - started < 0.05
    assert server.request_count == 3  # refused without reaching the server
    assert "circuit open" in error.detail


@pytest.mark.anyio
async def test_circuit_half_opens_after_the_reset_time_and_a_success_closes_it(
    server: FakeLLMServer,
) -> None:
    server.mode = "fail"
    generator = make_generator(
        server.base_url, max_retries=0, breaker_failures=2, breaker_reset_seconds=0.2
    )
    async with generator:
        await expect_failure(generator)
        await expect_failure(generator)
        assert state_of(generator) == "open"

        await anyio.sleep(0.25)
        assert state_of(generator) == "half-open"
        server.mode = "ok"
        assert await generator.generate(QUESTION, PASSAGES)
        assert state_of(generator) == "closed"
        assert server.request_count == 3


@pytest.mark.anyio
async def test_a_failed_trial_reopens_the_circuit(server: FakeLLMServer) -> None:
    server.mode = "fail"
    clock = ManualClock(1000.0)
    generator = make_generator(
        server.base_url, max_retries=0, breaker_failures=1, breaker_reset_seconds=30, clock=clock
    )
    async with generator:
        await expect_failure(generator)
        clock.now += 30
        assert state_of(generator) == "half-open"

        await expect_failure(generator)  # the trial call reaches the server and fails
        assert state_of(generator) == "open"
        assert server.request_count == 2
        await expect_failure(generator)
        assert server.request_count == 2


@pytest.mark.anyio
async def test_half_open_lets_exactly_one_trial_through(server: FakeLLMServer) -> None:
    server.mode = "fail"
    clock = ManualClock(1000.0)
    generator = make_generator(
        server.base_url, max_retries=0, breaker_failures=1, breaker_reset_seconds=30, clock=clock
    )
    outcomes: list[str] = []

    async def call() -> None:
        try:
            outcomes.append(await generator.generate(QUESTION, PASSAGES))
        except GenerationError as exc:
            outcomes.append(exc.detail)

    async with generator:
        await expect_failure(generator)
        clock.now += 30
        server.mode, server.delay_seconds = "slow", 0.2
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(call)

    assert server.request_count == 2
    assert sum(o.startswith("According to the sources") for o in outcomes) == 1
    assert sum("circuit open" in o for o in outcomes) == 4
    assert state_of(generator) == "closed"


@pytest.mark.anyio
async def test_calls_beyond_the_shared_limit_fail_fast_instead_of_queueing(
    server: FakeLLMServer,
) -> None:
    from skr.adapters.memory.host_limiter import InMemoryHostLimiter

    server.mode, server.delay_seconds = "slow", 0.6
    limiter = InMemoryHostLimiter()
    first = make_generator(server.base_url, limiter=limiter, max_concurrency=1, queue_seconds=0.1)
    second = make_generator(server.base_url, limiter=limiter, max_concurrency=1, queue_seconds=0.1)
    answers: list[str] = []
    async with first, second, anyio.create_task_group() as group:

        async def slow_answer() -> None:
            answers.append(await first.generate(QUESTION, PASSAGES))

        group.start_soon(slow_answer)
        await anyio.sleep(0.1)
        began = anyio.current_time()
        error = await expect_failure(second)  # another process of the same fleet
        assert anyio.current_time() - began < 0.5
    assert "busy" in error.detail
    assert answers and server.request_count == 1


@pytest.mark.anyio
async def test_a_rewrite_is_bounded_by_its_own_time(server: FakeLLMServer) -> None:
    server.mode, server.delay_seconds = "slow", 3.0
    async with make_generator(server.base_url, timeout_seconds=2.0, max_retries=2) as generator:
        started = time.monotonic()
        with pytest.raises(GenerationError) as caught:
            await generator.rewrite("and its prefix?", [Turn("user", "A blueprint?")], 0.3)
        elapsed = time.monotonic() - started

    assert elapsed < 0.8
    assert "in time" in caught.value.detail


@pytest.mark.anyio
async def test_a_rewrite_sends_the_conversation_and_keeps_one_line(server: FakeLLMServer) -> None:
    history = [Turn("user", "How do I register a blueprint?"), Turn("assistant", "Like so [1].")]
    async with make_generator(server.base_url) as generator:
        rewritten = await generator.rewrite("and its URL prefix?", history, 1.0)

    assert rewritten == "and its URL prefix? (How do I register a blueprint?)"
    assert server.last_request is not None
    sent = server.last_request["messages"][1]["content"]
    assert "User: How do I register a blueprint?" in sent
    assert "Assistant: Like so [1]." in sent
    assert sent.endswith("Last question: and its URL prefix?")
