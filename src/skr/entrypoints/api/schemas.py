"""The HTTP API's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from skr.domain.models import DEFAULT_COLLECTION

COLLECTION_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class CrawlOptions(BaseModel):
    """A site crawl from the URL: links followed to ``max_depth`` hops, at most
    ``max_pages`` URLs, on the same host (or its subdomains when ``same_host`` is false),
    or only under ``prefix`` when given; pages listed in the site's sitemaps too."""

    model_config = ConfigDict(extra="forbid")
    max_depth: int = Field(default=3, ge=0, le=50)
    max_pages: int = Field(default=200, ge=1, le=1_000_000)
    same_host: bool = True
    prefix: str | None = Field(
        default=None, min_length=1, max_length=2048, json_schema_extra={"format": "uri"}
    )
    sitemap: bool = True


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # "uri" documents what is wanted (and lets the fuzzer reach the crawl options); SKR's
    # own checks, not the schema's, decide what may be fetched
    url: str = Field(
        min_length=1,
        max_length=2048,
        examples=["https://flask.palletsprojects.com/"],
        json_schema_extra={"format": "uri"},
    )
    collection: str = Field(default=DEFAULT_COLLECTION, pattern=COLLECTION_NAME)
    crawl: CrawlOptions | None = None


class IngestAccepted(BaseModel):
    job_id: str
    status: str
    url: str


class JobCountersRead(BaseModel):
    discovered: int
    fetched: int
    indexed: int
    unchanged: int
    skipped: int
    failed: int
    removed: int
    chunks_embedded: int


class JobErrorRead(BaseModel):
    url: str
    reason: str


class JobRead(BaseModel):
    id: str
    kind: str
    status: str
    url: str
    collection_id: str
    counters: JobCountersRead
    pages_per_second: float | None
    eta_seconds: float | None
    errors: list[JobErrorRead]
    reason: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobsPage(BaseModel):
    jobs: list[JobRead]


class HitRead(BaseModel):
    id: str
    document_id: str
    url: str
    title: str
    text: str
    score: float
    kind: Literal["text", "image"]
    image_url: str | None = None
    section: str = ""


class ImageRead(BaseModel):
    src: str
    alt: str
    title: str
    caption: str
    surrounding_text: str
    ocr_text: str


class ChunkRead(BaseModel):
    id: str
    document_id: str
    collection_id: str
    url: str
    title: str
    heading_path: str
    ordinal: int
    kind: Literal["text", "image"]
    text: str
    token_count: int
    image: ImageRead | None = None


class SearchResults(BaseModel):
    hits: list[HitRead]


MAX_HISTORY_TURNS = 50
MAX_TURN_CHARS = 20_000


class TurnWrite(BaseModel):
    """One earlier message of the conversation, as the client kept it."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    text: str = Field(max_length=MAX_TURN_CHARS)


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=2000)
    collection: str = Field(default=DEFAULT_COLLECTION, pattern=COLLECTION_NAME)
    k: int = Field(default=5, ge=1, le=20)
    history: list[TurnWrite] = Field(
        default_factory=list,
        max_length=MAX_HISTORY_TURNS,
        description="the conversation's earlier turns, oldest first; a follow-up question "
        "is understood in their context (the server keeps no conversation)",
    )


class CitationRead(BaseModel):
    n: int
    url: str
    title: str
    quote: str
    chunk_id: str
    section: str = ""


class AnswerRead(BaseModel):
    answer: str
    citations: list[CitationRead]
    mode: Literal["extractive", "llm"]
    degraded: bool
    id: str = Field(description="names this answer in a rating (`POST /v1/feedback`)")


class DocumentRead(BaseModel):
    id: str
    collection_id: str
    url: str
    final_url: str
    title: str
    content_hash: str
    fetched_at: datetime
    status: str
    chunk_count: int
    image_count: int


class DocumentsPage(BaseModel):
    documents: list[DocumentRead]
    next_cursor: str | None


class CollectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=COLLECTION_NAME)


class CollectionRead(BaseModel):
    id: str
    name: str
    created_at: datetime


class CollectionsPage(BaseModel):
    collections: list[CollectionRead]


class ReadinessRead(BaseModel):
    status: Literal["ready", "degraded", "unready"]
    checks: dict[str, str]


PROBLEM_JSON = "application/problem+json"


class ProblemRead(BaseModel):
    """An error, as RFC 9457 problem details: every 4xx and 5xx SKR answers is one."""

    type: str = Field(examples=["about:blank"], description="always about:blank")
    title: str = Field(examples=["Not Found"], description="the status code's phrase")
    status: int = Field(ge=400, le=599, examples=[404])
    detail: str = Field(description="what went wrong, in words for a person")


# Why a route may answer each error status; the headers that come with it.
_PROBLEMS: dict[int, str] = {
    400: "The request body could not be read (it is not UTF-8)",
    401: "SKR has API keys and the request named none it knows",
    403: "The API key lacks the scope the request needs",
    404: "No such id or collection (another tenant's is as unknown as a made-up one)",
    409: "The request clashes with what exists",
    413: "The request body is larger than SKR_MAX_REQUEST_BYTES",
    422: "The request is not valid: a parameter, the body or a URL SKR may not fetch",
    429: "The API key is over its request rate or its limit of active jobs",
    503: "SKR is at capacity, past its deadline or missing a dependency; try again later",
}
_RETRY_AFTER: dict[str, Any] = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "how to authenticate: Bearer with an API key",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations (for ``responses=``) of the errors a route may answer with,
    each an ``application/problem+json`` ``ProblemRead``."""
    declared: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": _PROBLEMS[status],
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemRead"}}},
        }
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        declared[status] = response
    return declared
