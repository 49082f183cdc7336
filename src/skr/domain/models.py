"""The domain: collections, documents, chunks, images, jobs, hits and answers."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from skr.domain.vectors import Vector

DEFAULT_COLLECTION = "default"
DEFAULT_TENANT = "default"


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}


class JobKind(enum.StrEnum):
    INGEST = "ingest"
    CRAWL = "crawl"
    REINDEX = "reindex"


class ChunkKind(enum.StrEnum):
    TEXT = "text"
    IMAGE = "image"


@dataclass(frozen=True, slots=True)
class Collection:
    id: str
    name: str
    tenant: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    collection_id: str
    url: str
    final_url: str
    title: str
    content_hash: str
    etag: str | None
    last_modified: str | None
    fetched_at: datetime
    status: str
    chunk_count: int
    image_count: int


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What a page says about one of its images."""

    src: str
    alt: str = ""
    title: str = ""
    caption: str = ""
    surrounding_text: str = ""
    ocr_text: str = ""

    def searchable_text(self) -> str:
        parts = [self.alt, self.title, self.caption, self.ocr_text, self.surrounding_text]
        return "\n".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class ChunkDraft:
    """A chunk before it is stored: what the splitter produces."""

    ordinal: int
    text: str
    heading_path: str
    token_count: int
    kind: ChunkKind = ChunkKind.TEXT
    image: ImageInfo | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    id: str
    document_id: str
    collection_id: str
    ordinal: int
    kind: ChunkKind
    text: str
    heading_path: str
    token_count: int
    url: str
    title: str
    image: ImageInfo | None = None


@dataclass(frozen=True, slots=True)
class ExtractedPage:
    """The parts of a fetched page that SKR keeps."""

    title: str
    text: str
    sections: list[tuple[str, str]]
    images: list[ImageInfo]
    links: list[str]
    canonical: str | None = None  # the href of <link rel="canonical">, as written


@dataclass(frozen=True, slots=True)
class FetchedPage:
    url: str
    final_url: str
    status_code: int
    content_type: str
    body: bytes
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class PageWrite:
    """Everything stored for one page, written in one transaction."""

    collection_id: str
    url: str
    final_url: str
    title: str
    content_hash: str
    etag: str | None
    last_modified: str | None
    chunks: list[ChunkDraft]
    model_id: str
    vectors: Vector


@dataclass(frozen=True, slots=True)
class ScoredId:
    chunk_id: str
    score: float


class Fusion(enum.StrEnum):
    """How hybrid search combines its keyword and vector rankings (see ``domain.ranking``)."""

    SCORE = "score"  # weighted sum of each ranking's scores over its best score
    RRF = "rrf"  # weighted reciprocal-rank fusion


@dataclass(frozen=True, slots=True)
class HybridQuery:
    """One hybrid search: ``candidates`` from each ranking, fused, best ``k`` kept."""

    text: str
    vector: Vector
    k: int
    kind: ChunkKind | None
    candidates: int
    weights: tuple[float, float]  # keyword, vector
    rrf_k: int
    fusion: Fusion = Fusion.SCORE


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    document_id: str
    url: str
    title: str
    text: str
    score: float
    kind: ChunkKind
    image_url: str | None = None
    section: str = ""  # where in the page: its heading path, or "Page 3" of a PDF


@dataclass(frozen=True, slots=True)
class Citation:
    n: int
    url: str
    title: str
    quote: str
    chunk_id: str
    section: str = ""  # where in the page: its heading path, or "Page 3" of a PDF


def new_answer_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Answer:
    answer: str
    citations: list[Citation]
    mode: str
    degraded: bool
    # what a rating names (``POST /v1/feedback``); the server keeps no answer, so the id
    # only ties a rating to the answer its client was shown
    id: str = field(default_factory=new_answer_id)


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of a conversation the client keeps (the server stays stateless)."""

    role: Literal["user", "assistant"]
    text: str


@dataclass(slots=True)
class JobCounters:
    discovered: int = 0
    fetched: int = 0
    indexed: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    removed: int = 0  # pages gone from the site (404/410, moved out of scope), deleted
    chunks_embedded: int = 0  # chunks whose vectors were computed (unchanged ones reuse theirs)

    def as_dict(self) -> dict[str, int]:
        return {
            "discovered": self.discovered,
            "fetched": self.fetched,
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "failed": self.failed,
            "removed": self.removed,
            "chunks_embedded": self.chunks_embedded,
        }


@dataclass(frozen=True, slots=True)
class JobError:
    url: str
    reason: str


@dataclass(slots=True)
class Job:
    id: str
    kind: JobKind
    status: JobStatus
    collection_id: str
    url: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    counters: JobCounters = field(default_factory=JobCounters)
    errors: list[JobError] = field(default_factory=list)
    attempts: int = 0
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    reason: str | None = None
    options: dict[str, object] = field(default_factory=dict)

    @property
    def tenant(self) -> str:
        """Whose job this is (kept in its options when it was queued)."""
        return str(self.options.get("tenant", DEFAULT_TENANT))
