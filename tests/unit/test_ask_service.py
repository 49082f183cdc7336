"""AskService on fakes: extractive answers, LLM answers, and the degraded fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest

from skr.adapters.memory.cache import MemoryCache
from skr.domain.models import Answer, ChunkDraft, Collection, PageWrite, Turn
from skr.ports.generator import NumberedPassage
from skr.services.ask import NO_ANSWER, AskService
from skr.services.search import SearchService
from tests.fakes.fake_embedder import FakeEmbedder
from tests.fakes.fake_generator import ScriptedGenerator
from tests.fakes.fake_store import InMemoryStore

pytestmark = pytest.mark.anyio

TEXTS = [
    "Blueprints let you organise a Flask application. Register one with app.register_blueprint.",
    "Templates are rendered with Jinja. The render_template function finds them.",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def setup() -> tuple[Collection, SearchService, InMemoryStore]:
    store = InMemoryStore()
    embedder = FakeEmbedder()
    collection = await store.ensure_collection("default", "t")
    for i, text in enumerate(TEXTS):
        vectors = await embedder.embed([text])
        await store.write_page(
            PageWrite(
                collection.id, f"http://x.test/{i}", f"http://x.test/{i}", f"Page {i}", "h",
                None, None, [ChunkDraft(0, text, "", 10)], embedder.model_id, vectors,
            )
        )  # fmt: skip
    search = SearchService(
        store=store, embedder=embedder, cache=MemoryCache(100), candidates=10, rrf_k=60,
        cache_ttl_seconds=60,
    )  # fmt: skip
    return collection, search, store


async def test_extractive_answer_with_verbatim_citations() -> None:
    collection, search, store = await setup()
    answer = await AskService(search=search, generator=None).ask(
        collection, "How do I register a blueprint?", 5
    )
    assert answer.mode == "extractive" and not answer.degraded
    assert answer.citations
    assert answer.citations[0].url == "http://x.test/0"
    for c in answer.citations:
        [chunk] = await store.get_chunks([c.chunk_id])
        assert c.quote in chunk.text
        assert f"[{c.n}]" in answer.answer


async def test_failing_model_gives_degraded_extractive_answer() -> None:
    collection, search, _ = await setup()
    generator = ScriptedGenerator(fail=True)
    answer = await AskService(search=search, generator=generator).ask(
        collection, "How do I register a blueprint?", 5
    )
    assert generator.calls
    assert answer.mode == "extractive" and answer.degraded
    assert answer.citations


async def test_model_answer_keeps_only_real_citations() -> None:
    collection, search, _ = await setup()
    generator = ScriptedGenerator("Use register_blueprint [1]. Also see [7].")
    dropped: list[int] = []
    service = AskService(search=search, generator=generator, on_citations_dropped=dropped.append)
    answer = await service.ask(collection, "How do I register a blueprint?", 5)
    assert answer.mode == "llm" and not answer.degraded
    assert [c.n for c in answer.citations] == [1]
    assert "[7]" not in answer.answer
    assert dropped == []


async def test_nothing_found_says_so() -> None:
    store = InMemoryStore()
    collection = await store.ensure_collection("empty", "t")
    search = SearchService(
        store=store, embedder=FakeEmbedder(), cache=MemoryCache(10), candidates=10, rrf_k=60,
        cache_ttl_seconds=0,
    )  # fmt: skip
    answer = await AskService(search=search, generator=None).ask(collection, "anything?", 5)
    assert answer.answer == NO_ANSWER and answer.citations == []


class GateSpy:
    """An ``admit`` that records whether its place is held."""

    def __init__(self) -> None:
        self.held = False
        self.entered = 0

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        self.held, self.entered = True, self.entered + 1
        try:
            yield
        finally:
            self.held = False


class GateCheckingGenerator(ScriptedGenerator):
    def __init__(self, gate: GateSpy, *, fail: bool = False) -> None:
        super().__init__(fail=fail)
        self.gate = gate
        self.gate_held_when_called: list[bool] = []

    async def generate(self, question: str, passages: Sequence[NumberedPassage]) -> str:
        self.gate_held_when_called.append(self.gate.held)
        return await super().generate(question, passages)


@pytest.mark.parametrize("fail", [False, True])
async def test_the_gate_is_held_for_the_passages_not_for_the_answer_model(fail: bool) -> None:
    collection, search, _ = await setup()
    gate = GateSpy()
    generator = GateCheckingGenerator(gate, fail=fail)
    answer = await AskService(search=search, generator=generator).ask(
        collection, "How do I register a blueprint?", 5, admit=gate.admit
    )
    assert gate.entered == 1 and not gate.held
    assert generator.gate_held_when_called == [False]  # a slow model holds no place
    assert answer.degraded is fail and answer.citations


async def test_without_a_model_the_whole_answer_is_made_inside_the_gate() -> None:
    collection, search, _ = await setup()
    gate = GateSpy()
    made_inside: list[bool] = []

    class Spying(AskService):
        def _checked(self, answer: Answer, passages: dict[str, str]) -> Answer:
            made_inside.append(gate.held)
            return super()._checked(answer, passages)

    answer = await Spying(search=search, generator=None).ask(
        collection, "How do I register a blueprint?", 5, admit=gate.admit
    )
    assert answer.mode == "extractive" and made_inside == [True]


BLUEPRINT_HISTORY = [
    Turn("user", "How do I register a blueprint?"),
    Turn("assistant", "Register one with app.register_blueprint [1]."),
]


async def test_a_question_alone_is_searched_as_asked() -> None:
    _, search, _ = await setup()
    generator = ScriptedGenerator()
    ask = AskService(search=search, generator=generator)
    assert await ask.standalone_question("How do templates work?", []) == "How do templates work?"
    assert generator.rewrites == []  # no conversation: no model call


async def test_without_a_model_a_follow_up_is_searched_with_the_earlier_question() -> None:
    collection, search, _ = await setup()
    ask = AskService(search=search, generator=None)
    standalone = await ask.standalone_question("and what does it organise?", BLUEPRINT_HISTORY)
    assert standalone == "and what does it organise? How do I register a blueprint?"
    answer = await ask.ask(collection, "and what does it organise?", 1, history=BLUEPRINT_HISTORY)
    assert {c.url for c in answer.citations} == {"http://x.test/0"}


async def test_with_a_model_the_follow_up_is_rewritten_by_it() -> None:
    collection, search, _ = await setup()
    generator = ScriptedGenerator()
    generator.rewritten = "How do I register a Flask blueprint with a prefix?"
    answer = await AskService(search=search, generator=generator).ask(
        collection, "and with a prefix?", 5, history=BLUEPRINT_HISTORY
    )
    assert generator.rewrites == [("and with a prefix?", BLUEPRINT_HISTORY)]
    # the answer is written for the rewritten question
    assert generator.calls[0][0] == "How do I register a Flask blueprint with a prefix?"
    assert answer.mode == "llm"


async def test_a_failing_rewrite_falls_back_to_the_earlier_questions() -> None:
    _, search, _ = await setup()
    generator = ScriptedGenerator(fail=True)
    standalone = await AskService(search=search, generator=generator).standalone_question(
        "and with a prefix?", BLUEPRINT_HISTORY
    )
    assert standalone == "and with a prefix? How do I register a blueprint?"


async def test_every_answer_has_its_own_id() -> None:
    collection, search, _ = await setup()
    ask = AskService(search=search, generator=None)
    first = await ask.ask(collection, "How do I register a blueprint?", 5)
    second = await ask.ask(collection, "How do I register a blueprint?", 5)
    assert first.id and second.id and first.id != second.id
