"""Reading the knowledge base as every entrypoint does (HTTP API, web page, MCP, the
OpenAI-compatible chat): the caller's collection, a deadline on every search and answer,
and the count of answers by how they were made. One copy of these rules for every door."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import anyio

from skr.domain.errors import OverloadedError
from skr.domain.models import Answer, ChunkKind, Hit, Turn
from skr.services.ask import AskService
from skr.services.collections import CollectionResolver
from skr.services.search import Admit, SearchService

DEFAULT_SEARCH_K = 10
DEFAULT_ASK_K = 5


@contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """No search or answer waits without bound (on the model, a pool, a lock): past the
    deadline it is ``OverloadedError`` (a 503 the client may retry)."""
    try:
        with anyio.fail_after(seconds):
            yield
    except TimeoutError as exc:
        raise OverloadedError(f"the {what} took longer than {seconds:g} s; try again", 2) from exc


class KnowledgeService:
    """Search and ask in the tenant's collections, each within ``deadline_seconds``."""

    def __init__(
        self,
        *,
        search: SearchService,
        ask: AskService,
        collections: CollectionResolver,
        deadline_seconds: float,
        on_answer: Callable[[Answer], None] | None = None,
    ) -> None:
        self._search = search
        self._ask = ask
        self._collections = collections
        self._deadline = deadline_seconds
        self._on_answer = on_answer

    async def search(
        self,
        tenant: str,
        collection: str,
        query: str,
        *,
        k: int = DEFAULT_SEARCH_K,
        kind: ChunkKind | None = None,
        admit: Admit | None = None,
    ) -> list[Hit]:
        """The best ``k`` chunks (or images, or both: ``kind`` None) for ``query``."""
        with deadline(self._deadline, "search"):
            found = await self._collections.resolve(collection, tenant)
            return await self._search.search(found, query, k, kind, admit=admit)

    async def ask(
        self,
        tenant: str,
        collection: str,
        question: str,
        *,
        k: int = DEFAULT_ASK_K,
        history: Sequence[Turn] = (),
        admit: Admit | None = None,
    ) -> Answer:
        """The cited answer to ``question``, the last of a conversation whose earlier
        turns are ``history`` (none: a question on its own)."""
        with deadline(self._deadline, "answer"):
            found = await self._collections.resolve(collection, tenant)
            answer = await self._ask.ask(found, question, k, history=history, admit=admit)
        if self._on_answer is not None:
            self._on_answer(answer)
        return answer
