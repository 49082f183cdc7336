"""Answer a question from one collection, with citations checked against the stored text."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextlib import nullcontext

from skr.domain.errors import GenerationError
from skr.domain.models import Answer, ChunkKind, Citation, Collection, Hit
from skr.ports.generator import Generator, NumberedPassage
from skr.services.answering import extractive_answer, score_sentences, verified_citations
from skr.services.search import Admit, SearchService

logger = logging.getLogger(__name__)

_MARKER = re.compile(r"\[(\d{1,3})\]")
NO_ANSWER = "I found nothing in this collection that answers that."


class AskService:
    """Extractive by default; with a Generator, the model writes from the same passages and
    any failure falls back to the extractive answer marked ``degraded``."""

    def __init__(
        self,
        *,
        search: SearchService,
        generator: Generator | None,
        on_citations_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self._search = search
        self._generator = generator
        self._on_citations_dropped = on_citations_dropped

    async def ask(
        self, collection: Collection, question: str, k: int, *, admit: Admit | None = None
    ) -> Answer:
        """The answer to ``question`` from the ``k`` best passages. ``admit`` is held for
        the work done here (the passages, an extractive answer), never while the answer
        model is called: the model has its own limit, and a slow one must not hold
        places that questions answered here need."""
        async with admit() if admit is not None else nullcontext():
            hits = await self._search.search(collection, question, k, ChunkKind.TEXT)
            if not hits:
                return Answer(NO_ANSWER, [], "extractive", degraded=False)
            passages = {h.id: h.text for h in hits}
            if self._generator is None:
                text, citations = extractive_answer(question, hits)
                return self._checked(Answer(text, citations, "extractive", False), passages)
        try:
            return self._checked(await self._llm_answer(question, hits), passages)
        except GenerationError as exc:
            logger.warning("answer model failed, answering extractively: %s", exc.detail)
            text, citations = extractive_answer(question, hits)
            return self._checked(Answer(text, citations, "extractive", True), passages)

    async def _llm_answer(self, question: str, hits: list[Hit]) -> Answer:
        assert self._generator is not None
        numbered = [NumberedPassage(i + 1, h.title, h.url, h.text) for i, h in enumerate(hits)]
        text = await self._generator.generate(question, numbered)
        cited = sorted({int(m) for m in _MARKER.findall(text) if 1 <= int(m) <= len(hits)})
        citations: list[Citation] = []
        for n in cited:
            hit = hits[n - 1]
            best = score_sentences(question, [hit])
            quote = best[0].text if best else hit.text[:300].strip()
            citations.append(Citation(n, hit.url, hit.title, quote, hit.id, hit.section))
        # markers pointing at no passage are removed rather than left dangling
        text = _MARKER.sub(lambda m: m.group(0) if int(m.group(1)) in cited else "", text)
        return Answer(text.strip(), citations, "llm", degraded=False)

    def _checked(self, answer: Answer, passages: dict[str, str]) -> Answer:
        kept, dropped = verified_citations(answer.citations, passages)
        if dropped:
            if self._on_citations_dropped is not None:
                self._on_citations_dropped(dropped)
            logger.warning("dropped %d citation(s) whose quote is not in the chunk", dropped)
        return Answer(answer.answer, kept, answer.mode, answer.degraded)
