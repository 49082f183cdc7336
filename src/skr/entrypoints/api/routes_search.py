"""Routes that read the knowledge base: search and ask."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from skr.domain.models import DEFAULT_COLLECTION, Answer, ChunkKind, Turn
from skr.entrypoints.api.dependencies import (
    AskAdmissionDep,
    KnowledgeDep,
    SearchAdmissionDep,
    TenantDep,
    get_caller,
)
from skr.entrypoints.api.schemas import (
    COLLECTION_NAME,
    AnswerRead,
    AskRequest,
    CitationRead,
    HitRead,
    SearchResults,
    problem_responses,
)
from skr.services.search import MAX_K, MAX_QUERY_CHARS

router = APIRouter(
    prefix="/v1",
    tags=["search"],
    dependencies=[Depends(get_caller)],
    responses=problem_responses(401, 403, 422, 429, 503),
)


_KINDS: dict[str, ChunkKind | None] = {
    "text": ChunkKind.TEXT,
    "image": ChunkKind.IMAGE,
    "all": None,
}


@router.get("/search", response_model=SearchResults, responses=problem_responses(404))
async def search(
    knowledge: KnowledgeDep,
    tenant: TenantDep,
    admit: SearchAdmissionDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
    collection: Annotated[str, Query(pattern=COLLECTION_NAME)] = DEFAULT_COLLECTION,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    kind: Literal["text", "image", "all"] = "all",
) -> SearchResults:
    """The best chunks and images for ``q``, keyword and vector results fused."""
    hits = await knowledge.search(tenant, collection, q, k=k, kind=_KINDS[kind], admit=admit)
    return SearchResults(
        hits=[
            HitRead(
                id=h.id,
                document_id=h.document_id,
                url=h.url,
                title=h.title,
                text=h.text,
                score=h.score,
                kind=h.kind.value,
                image_url=h.image_url,
                section=h.section,
            )
            for h in hits
        ]
    )


def answer_read(answer: Answer) -> AnswerRead:
    return AnswerRead(
        answer=answer.answer,
        citations=[
            CitationRead(
                n=c.n,
                url=c.url,
                title=c.title,
                quote=c.quote,
                chunk_id=c.chunk_id,
                section=c.section,
            )
            for c in answer.citations
        ],
        mode="llm" if answer.mode == "llm" else "extractive",
        degraded=answer.degraded,
        id=answer.id,
    )


async def _answer_events(answer: AnswerRead) -> AsyncIterator[str]:
    for word_group in _groups(answer.answer.split(" "), 8):
        yield f"event: token\ndata: {json.dumps(' '.join(word_group) + ' ')}\n\n"
    yield f"event: answer\ndata: {answer.model_dump_json()}\n\n"
    yield "event: done\ndata: {}\n\n"


def _groups(words: list[str], size: int) -> list[list[str]]:
    return [words[i : i + size] for i in range(0, len(words), size)]


@router.post(
    "/ask",
    response_model=AnswerRead,
    responses={
        200: {
            "description": "The answer; with `Accept: text/event-stream`, streamed as `token`"
            " events, then `answer` (this JSON) and `done`",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **problem_responses(400, 404, 413),
    },
)
async def ask(
    body: AskRequest,
    request: Request,
    knowledge: KnowledgeDep,
    tenant: TenantDep,
    admit: AskAdmissionDep,
) -> AnswerRead | StreamingResponse:
    """An answer made from the collection's passages, each claim cited as [n]; with
    ``history`` (the earlier turns the client kept), a follow-up is understood in their
    context."""
    history = [Turn(t.role, t.text) for t in body.history]
    answer = await knowledge.ask(
        tenant, body.collection, body.question, k=body.k, history=history, admit=admit
    )
    read = answer_read(answer)
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(_answer_events(read), media_type="text/event-stream")
    return read
