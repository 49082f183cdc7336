"""The Generator adapter for any OpenAI-compatible chat server, behind retries and a breaker."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal, Self

import anyio
import openai
from openai.types.chat import ChatCompletionMessageParam
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from skr.domain.errors import GenerationError
from skr.domain.models import Turn
from skr.ports.generator import NumberedPassage
from skr.ports.host_limiter import HostLimiter

SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages given by the user. "
    "Cite the passage behind every statement with its number in square brackets, "
    "like [1] or [2][3]. Do not use outside knowledge. If the passages do not contain "
    "the answer, say so plainly."
)

REWRITE_PROMPT = (
    "You rewrite the last question of a conversation so that it can be understood "
    "without the conversation: resolve pronouns and references to what was asked "
    "before, keep the asker's words otherwise. Answer with the rewritten question only, "
    "on one line, without quotes or comments."
)
_REWRITE_TURNS = 6  # the latest turns a rewrite sees
_REWRITE_TURN_CHARS = 600  # of each earlier answer, the start (a question needs no more)

BreakerState = Literal["closed", "open", "half-open"]
Sleep = Callable[[float], Awaitable[None]]


def build_messages(
    question: str, passages: Sequence[NumberedPassage]
) -> list[ChatCompletionMessageParam]:
    """The chat prompt: rules in the system message, numbered passages then the question."""
    blocks = [f"[{p.n}] {p.title} ({p.url})\n{p.text.strip()}" for p in passages]
    user = "Passages:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question.strip()}"
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user},
    ]


def build_rewrite_messages(
    question: str, history: Sequence[Turn]
) -> list[ChatCompletionMessageParam]:
    """The prompt that turns a follow-up into a question that stands alone."""
    lines = [
        f"{'User' if t.role == 'user' else 'Assistant'}: {t.text.strip()[:_REWRITE_TURN_CHARS]}"
        for t in history[-_REWRITE_TURNS:]
    ]
    user = "Conversation:\n" + "\n".join(lines) + f"\n\nLast question: {question.strip()}"
    return [
        {"role": "system", "content": REWRITE_PROMPT},
        {"role": "user", "content": user},
    ]


class CircuitOpenError(Exception):
    """The breaker refused the call without reaching the server."""

    def __init__(self, retry_in_seconds: float) -> None:
        super().__init__(f"circuit open; next trial in {retry_in_seconds:.1f} s")
        self.retry_in_seconds = retry_in_seconds


class CircuitBreaker:
    """Closed → open after N consecutive failures → half-open after the reset time, where
    exactly one trial call decides between closed and open again.

    Why not ``purgatory`` (installed, and tried first): it reads ``time.time()`` (wall clock,
    not injectable), lets every concurrent caller through while half-open (a burst against a
    server that is just recovering), has no neutral outcome for a call that was cancelled
    or whose request was malformed (only success or failure), only moves from open to
    half-open when a request arrives (so reporting the state means re-deriving its TTL rule),
    and needs an async factory, message bus and unit of work for one in-process counter.
    """

    def __init__(
        self,
        *,
        failures: int,
        reset_seconds: float,
        counts_as_failure: Callable[[Exception], bool] = lambda exc: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failures
        self._reset_seconds = reset_seconds
        self._counts_as_failure = counts_as_failure
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None  # None while closed
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self._reset_seconds:
            return "half-open"
        return "open"

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Admit one call (or raise ``CircuitOpenError``) and record how it ended."""
        probe = self._admit()
        try:
            yield
        except Exception as exc:
            if self._counts_as_failure(exc):
                self._record_failure()
            elif probe:
                self._probing = False
            raise
        except BaseException:  # cancelled: the call was abandoned, it neither passed nor failed
            if probe:
                self._probing = False
            raise
        self._failures, self._opened_at, self._probing = 0, None, False

    def _admit(self) -> bool:
        if self._opened_at is None:
            return False
        waited = self._clock() - self._opened_at
        if self._probing or waited < self._reset_seconds:
            raise CircuitOpenError(max(0.0, self._reset_seconds - waited))
        self._probing = True
        return True

    def _record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self._threshold:
            self._opened_at, self._probing = self._clock(), False


def _retry_after_seconds(exc: BaseException | None) -> float | None:
    """What the server asked for in ``retry-after-ms`` / ``Retry-After``, if anything."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    millis = headers.get("retry-after-ms")
    value = headers.get("retry-after")
    try:
        if millis is not None:
            return max(0.0, float(millis) / 1000)
        if value is not None:
            return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time()) if value else None
    except (TypeError, ValueError):
        return None


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):  # 408, 429 and 5xx only; never 400/401/404
        return exc.status_code in (408, 429) or exc.status_code >= 500
    # APITimeoutError is an APIConnectionError; TimeoutError is our per-attempt limit.
    return isinstance(exc, openai.APIConnectionError | TimeoutError)


def _counts_as_failure(exc: Exception) -> bool:
    """A malformed request says nothing about the server's health."""
    return not isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError)


class _EmptyAnswerError(Exception):
    pass


@dataclass
class _Progress:
    attempts: int = 0


@dataclass(frozen=True)
class _Backoff:
    """Full-jitter exponential backoff, capped; a longer Retry-After stops the retries
    (waiting less would only earn another 429), a shorter one is waited out."""

    initial: float
    maximum: float
    attempts: int

    def wait(self, state: RetryCallState) -> float:
        asked = _retry_after_seconds(state.outcome.exception() if state.outcome else None)
        if asked is not None:
            return asked
        ceiling = min(self.maximum, self.initial * 2 ** (state.attempt_number - 1))
        return random.uniform(0, ceiling)

    def stop(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self.attempts:
            return True
        asked = _retry_after_seconds(state.outcome.exception() if state.outcome else None)
        return asked is not None and asked > self.maximum


class OpenAIGenerator:
    """Implements the Generator port against ``/v1/chat/completions`` of any compatible server.

    Each ``generate`` call makes up to ``1 + max_retries`` attempts of at most
    ``timeout_seconds`` each, all inside ``deadline_seconds`` (default: their sum); the
    breaker counts whole calls. Every failure surfaces as ``GenerationError``.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        timeout_seconds: float,
        max_retries: int,
        breaker_failures: int,
        breaker_reset_seconds: float,
        deadline_seconds: float | None = None,
        backoff_initial_seconds: float = 0.25,
        backoff_max_seconds: float = 4.0,
        temperature: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = anyio.sleep,
        limiter: HostLimiter | None = None,
        max_concurrency: int = 4,
        queue_seconds: float = 2.0,
    ) -> None:
        self._base_url = base_url
        self._api_key = api_key
        self._model = model
        self._timeout = timeout_seconds
        self._deadline = deadline_seconds or timeout_seconds * (max_retries + 1)
        self._temperature = temperature
        self._sleep = sleep
        self._backoff = _Backoff(backoff_initial_seconds, backoff_max_seconds, max_retries + 1)
        self._breaker = CircuitBreaker(
            failures=breaker_failures,
            reset_seconds=breaker_reset_seconds,
            counts_as_failure=_counts_as_failure,
            clock=clock,
        )
        self._client: openai.AsyncOpenAI | None = None
        self._limiter = limiter
        self._max_concurrency = max_concurrency
        self._queue_seconds = queue_seconds

    @property
    def breaker_state(self) -> BreakerState:
        return self._breaker.state

    async def start(self) -> None:
        self._ensure_client()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def generate(self, question: str, passages: Sequence[NumberedPassage]) -> str:
        """The model's answer; at most ``max_concurrency`` calls at once across every
        process sharing the ``limiter`` (Redis in scale-out), a call that cannot get a
        place within ``queue_seconds`` fails at once (the caller answers without it)."""
        return await self._limited(build_messages(question, passages), self._deadline)

    async def rewrite(self, question: str, history: Sequence[Turn], timeout_seconds: float) -> str:
        """The follow-up rewritten to stand alone, under the same limit, retries and
        breaker as answers, within ``timeout_seconds`` (or the answer deadline if shorter)."""
        deadline = min(timeout_seconds, self._deadline)
        text = await self._limited(build_rewrite_messages(question, history), deadline)
        return text.splitlines()[0].strip().strip('"').strip()

    async def _limited(self, messages: list[ChatCompletionMessageParam], deadline: float) -> str:
        async with AsyncExitStack() as stack:
            if self._limiter is not None:
                place = self._limiter.slot(
                    f"llm:{self._base_url}",
                    self._max_concurrency,
                    self._deadline + 5,
                    wait_seconds=min(self._queue_seconds, deadline),
                )
                try:
                    await stack.enter_async_context(place)
                except TimeoutError as exc:
                    raise GenerationError(
                        f"the language model is busy ({self._max_concurrency} answers being "
                        "written already)"
                    ) from exc
            return await self._complete(messages, deadline)

    async def _complete(self, messages: list[ChatCompletionMessageParam], deadline: float) -> str:
        client = self._ensure_client()
        progress = _Progress()
        try:
            with self._breaker.guard(), anyio.fail_after(deadline):
                return await self._complete_with_retries(client, messages, progress)
        except CircuitOpenError as exc:
            raise GenerationError(
                "the language model failed repeatedly; calls are suspended for "
                f"{exc.retry_in_seconds:.1f} s more (circuit open)"
            ) from exc
        except (openai.OpenAIError, TimeoutError, _EmptyAnswerError) as exc:
            raise GenerationError(self._describe(exc, progress.attempts, deadline)) from exc

    def _ensure_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            # Our own retries, deadline and breaker replace the SDK's retries.
            self._client = openai.AsyncOpenAI(
                base_url=self._base_url,
                api_key=self._api_key,
                timeout=self._timeout,
                max_retries=0,
            )
        return self._client

    async def _complete_with_retries(
        self,
        client: openai.AsyncOpenAI,
        messages: list[ChatCompletionMessageParam],
        progress: _Progress,
    ) -> str:
        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_retryable),
            stop=self._backoff.stop,
            wait=self._backoff.wait,
            sleep=self._sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                progress.attempts += 1
                return await self._complete_once(client, messages)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _complete_once(
        self, client: openai.AsyncOpenAI, messages: list[ChatCompletionMessageParam]
    ) -> str:
        # The SDK's timeout bounds each network step; this bounds the whole attempt.
        with anyio.fail_after(self._timeout):
            completion = await client.chat.completions.create(
                model=self._model, messages=messages, temperature=self._temperature
            )
        text = completion.choices[0].message.content if completion.choices else None
        if not text or not text.strip():
            raise _EmptyAnswerError
        return text.strip()

    def _describe(self, exc: BaseException, attempts: int, deadline: float) -> str:
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if isinstance(exc, TimeoutError | openai.APITimeoutError):
            limits = f"{self._timeout:g} s per attempt, {deadline:g} s in all"
            return f"the language model did not answer in time ({tries}; {limits})"
        if isinstance(exc, openai.APIConnectionError):
            return f"the language model server could not be reached ({tries})"
        if isinstance(exc, openai.RateLimitError):
            return f"the language model server is rate limiting (HTTP 429, {tries})"
        if isinstance(exc, openai.APIStatusError):
            return f"the language model server answered HTTP {exc.status_code} ({tries})"
        if isinstance(exc, _EmptyAnswerError):
            return "the language model returned an empty answer"
        return f"the language model's response was unusable ({type(exc).__name__})"
