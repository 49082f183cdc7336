"""KnowledgeService on fakes: tenancy, the deadline, and the count of answers."""

from __future__ import annotations

import anyio
import pytest

from skr.adapters.memory.cache import MemoryCache
from skr.domain.errors import NotFoundError, OverloadedError
from skr.domain.models import Answer, ChunkDraft, PageWrite, Turn
from skr.services.ask import AskService
from skr.services.collections import CollectionResolver
from skr.services.knowledge import KnowledgeService
from skr.services.search import SearchService
from tests.fakes.fake_embedder import FakeEmbedder
from tests.fakes.fake_generator import ScriptedGenerator
from tests.fakes.fake_store import InMemoryStore

pytestmark = pytest.mark.anyio

TEXT = "Blueprints let you organise a Flask application. Register one with app.register_blueprint."


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class SlowGenerator(ScriptedGenerator):
    async def generate(self, question: str, passages: object) -> str:  # type: ignore[override]
        await anyio.sleep(5)
        return "never"


async def knowledge(
    generator: ScriptedGenerator | None = None, deadline: float = 5.0
) -> tuple[KnowledgeService, list[Answer]]:
    store, embedder = InMemoryStore(), FakeEmbedder()
    collection = await store.ensure_collection("docs", "acme")
    await store.write_page(
        PageWrite(
            collection.id, "http://x.test/bp", "http://x.test/bp", "Blueprints", "h", None, None,
            [ChunkDraft(0, TEXT, "", 10)], embedder.model_id, await embedder.embed([TEXT]),
        )
    )  # fmt: skip
    search = SearchService(
        store=store, embedder=embedder, cache=MemoryCache(100), candidates=10, rrf_k=60,
        cache_ttl_seconds=60,
    )  # fmt: skip
    answers: list[Answer] = []
    service = KnowledgeService(
        search=search,
        ask=AskService(search=search, generator=generator),
        collections=CollectionResolver(store),
        deadline_seconds=deadline,
        on_answer=answers.append,
    )
    return service, answers


async def test_search_and_ask_read_the_tenants_collection() -> None:
    service, answers = await knowledge()
    hits = await service.search("acme", "docs", "register blueprint", k=3)
    assert [h.url for h in hits] == ["http://x.test/bp"]
    answer = await service.ask("acme", "docs", "How do I register a blueprint?")
    assert answer.citations and answers == [answer]


async def test_another_tenants_collection_is_unknown() -> None:
    service, answers = await knowledge()
    with pytest.raises(NotFoundError):
        await service.search("other", "docs", "blueprint")
    with pytest.raises(NotFoundError):
        await service.ask("other", "docs", "blueprint?")
    assert answers == []


async def test_a_follow_up_carries_its_conversation() -> None:
    generator = ScriptedGenerator()
    service, _ = await knowledge(generator)
    history = [Turn("user", "How do I register a blueprint?"), Turn("assistant", "So [1].")]
    await service.ask("acme", "docs", "and with a prefix?", history=history)
    assert generator.rewrites == [("and with a prefix?", history)]


async def test_past_the_deadline_an_answer_is_overloaded() -> None:
    service, answers = await knowledge(SlowGenerator(), deadline=0.2)
    with pytest.raises(OverloadedError) as caught:
        await service.ask("acme", "docs", "How do I register a blueprint?")
    assert "0.2 s" in caught.value.detail
    assert answers == []
