"""Answer a question from one collection, with citations checked against the stored text."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from contextlib import nullcontext

from skr.domain.errors import GenerationError
from skr.domain.models import Answer, ChunkKind, Citation, Collection, Hit, Turn
from skr.ports.generator import Generator, NumberedPassage
from skr.services.answering import extractive_answer, score_sentences, verified_citations
from skr.services.search import MAX_QUERY_CHARS, Admit, SearchService

logger = logging.getLogger(__name__)

_MARKER = re.compile(r"\[(\d{1,3})\]")
NO_ANSWER = "I found nothing in this collection that answers that."
FOLLOW_UP_USER_TURNS = 1
"""Without a model, a follow-up is searched together with this many earlier user
questions (the choice measured in docs/benchmarks.md, "Follow-up questions")."""


def combined_question(question: str, history: Sequence[Turn], user_turns: int) -> str:
    """A follow-up searched with the conversation, without a model: the question, then
    the latest ``user_turns`` earlier user questions (newest first), within the query
    limit. Keyword and vector search both find what the pronouns stood for."""
    earlier = [t.text.strip() for t in history if t.role == "user" and t.text.strip()]
    parts = [question.strip(), *reversed(earlier[-user_turns:] if user_turns else [])]
    return " ".join(parts)[:MAX_QUERY_CHARS].strip()


class AskService:
    """Extractive by default; with a Generator, the model writes from the same passages and
    any failure falls back to the extractive answer marked ``degraded``."""

    def __init__(
        self,
        *,
        search: SearchService,
        generator: Generator | None,
        on_citations_dropped: Callable[[int], None] | None = None,
        rewrite_timeout_seconds: float = 3.0,
        follow_up_user_turns: int = FOLLOW_UP_USER_TURNS,
    ) -> None:
        self._search = search
        self._generator = generator
        self._on_citations_dropped = on_citations_dropped
        self._rewrite_timeout = rewrite_timeout_seconds
        self._follow_up_turns = follow_up_user_turns

    async def ask(
        self,
        collection: Collection,
        question: str,
        k: int,
        *,
        history: Sequence[Turn] = (),
        admit: Admit | None = None,
    ) -> Answer:
        """The answer to ``question`` from the ``k`` best passages; with ``history`` (the
        earlier turns of a conversation), the question is understood in their context
        (:meth:`standalone_question`). ``admit`` is held for the work done here (the
        passages, an extractive answer), never while the answer model is called: the
        model has its own limit, and a slow one must not hold places that questions
        answered here need."""
        question = await self.standalone_question(question, history)
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

    async def standalone_question(self, question: str, history: Sequence[Turn]) -> str:
        """What to search for the last question of a conversation: the question itself
        when nothing came before; with a model, the model's rewrite of it (bounded by
        ``rewrite_timeout_seconds``); without one, or when the model fails, the question
        with the earlier user questions (:func:`combined_question`)."""
        if not any(t.role == "user" and t.text.strip() for t in history):
            return question
        if self._generator is not None:
            try:
                rewritten = await self._generator.rewrite(question, history, self._rewrite_timeout)
            except GenerationError as exc:
                logger.warning("follow-up rewrite failed, searching with the turns: %s", exc.detail)
            else:
                if rewritten.strip():
                    return rewritten.strip()[:MAX_QUERY_CHARS]
        return combined_question(question, history, self._follow_up_turns)

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
