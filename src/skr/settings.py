"""SKR's settings, read from the environment (prefix ``SKR_``), each documented in the README.

The process-wide ones (where data lives, how it serves) sit on :class:`Settings` itself;
the rest are in sections, one per part of SKR, each with its own prefix and shaped like
the options of what it configures (``SKR_LLM_TIMEOUT_SECONDS`` is ``settings.llm.
timeout_seconds``). A few older names that do not follow their section's prefix are kept
as aliases, so no environment variable changed its name."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("skr", appauthor=False))


def _section(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", frozen=True, populate_by_name=True)


def _named(env: str) -> AliasChoices:
    """A field read from ``env`` (and its own name, for keyword construction)."""
    return AliasChoices(env)


class DatabasePoolSettings(BaseSettings):
    """PostgreSQL connections per process (``PostgresDatabase``)."""

    model_config = _section("SKR_DB_POOL_")
    min_size: int = Field(default=1, ge=0, le=100)
    max_size: int = Field(default=10, ge=1, le=500)
    timeout_seconds: float = Field(default=5.0, gt=0)


class KeySettings(BaseSettings):
    """API keys (`skr keys`): per-key limits, and how soon a revocation takes effect."""

    model_config = _section("SKR_KEY_")
    rate_per_second: float = Field(default=20.0, gt=0)
    rate_burst: int = Field(default=40, ge=1)
    max_active_jobs: int = Field(default=10, ge=1)
    cache_seconds: float = Field(default=5.0, ge=0)


class AdmissionSettings(BaseSettings):
    """Admission control: per class of endpoint, requests at once, waiting, and how long.
    Search, ask and read run fewer at once while admitted requests take longer than
    tolerance × their unloaded 90th percentile + slack, and then wait no longer than that."""

    model_config = _section("SKR_ADMISSION_")
    search_concurrency: int = Field(default=8, ge=1, le=10_000)
    search_queue: int = Field(default=64, ge=0, le=100_000)
    ask_concurrency: int = Field(default=4, ge=1, le=10_000)
    ask_queue: int = Field(default=32, ge=0, le=100_000)
    write_concurrency: int = Field(default=8, ge=1, le=10_000)
    write_queue: int = Field(default=32, ge=0, le=100_000)
    read_concurrency: int = Field(default=16, ge=1, le=10_000)
    read_queue: int = Field(default=64, ge=0, le=100_000)
    stream_concurrency: int = Field(default=256, ge=1, le=100_000)
    wait_seconds: float = Field(default=0.5, ge=0)
    max_in_flight: int = Field(default=64, ge=1, le=1_000_000)
    adaptive: bool = True
    latency_tolerance: float = Field(default=1.5, ge=1.0)
    latency_slack_seconds: float = Field(default=0.01, ge=0)
    unready_sheds: int = Field(default=20, ge=1)
    unready_window_seconds: float = Field(default=2.0, gt=0)


class FetchSettings(BaseSettings):
    """Limits on every fetch (``HttpxFetcher``)."""

    model_config = _section("SKR_FETCH_")
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=15.0, gt=0)
    total_timeout_seconds: float = Field(default=30.0, gt=0)
    max_bytes: int = Field(default=10_000_000, ge=1024)
    max_redirects: int = Field(default=5, ge=0, le=20)


class CrawlSection(BaseSettings):
    """Site crawls: pages at once, politeness per host, and per-URL retries and leases."""

    model_config = _section("SKR_CRAWL_")
    concurrency: int = Field(default=4, ge=1, le=64)
    host_concurrency: int = Field(default=2, ge=1, le=64)
    host_interval_seconds: float = Field(default=0.0, ge=0)
    max_delay_seconds: float = Field(default=30.0, ge=0)
    url_attempts: int = Field(default=3, ge=1, le=20)
    url_lease_seconds: float = Field(default=120.0, ge=1)
    max_pages_limit: int = Field(default=10_000, ge=1)


class OcrSettings(BaseSettings):
    """Reading text in images with tesseract (``TesseractImageReader``)."""

    model_config = _section("SKR_OCR_")
    enabled: bool = True
    languages: str = "eng"
    timeout_seconds: float = Field(default=10.0, gt=0)


class ImageSettings(BaseSettings):
    """Which images of a page are kept (``ImageOptions``)."""

    model_config = _section("SKR_IMAGE_")
    max_per_page: int = Field(default=20, ge=0, le=1000)
    max_bytes: int = Field(default=5_000_000, ge=1024)
    min_side_pixels: int = Field(default=48, ge=1)


class IngestSettings(BaseSettings):
    """Reading and chunking pages (``IngestService``): extraction worker processes (0: a
    thread of this process), the chunk size, and how much lower background work runs."""

    model_config = _section("SKR_INGEST_")
    extraction_processes: int = Field(
        default=1, ge=0, le=64, validation_alias=_named("SKR_EXTRACTION_PROCESSES")
    )
    chunk_max_tokens: int = Field(
        default=256, ge=16, le=256, validation_alias=_named("SKR_CHUNK_MAX_TOKENS")
    )
    niceness: int = Field(default=10, ge=0, le=19)


class EmbedSettings(BaseSettings):
    """The embedding model's batching and threads (``OnnxMiniLMEmbedder``)."""

    model_config = _section("SKR_EMBED_")
    batch_size: int = Field(default=32, ge=1, le=512)
    max_batch_tokens: int = Field(default=256, ge=256, le=65536)
    threads: int = Field(default=1, ge=1, le=64)
    parallel_batches: int = Field(default=2, ge=1, le=64)
    query_session: bool = True


class WorkerSettings(BaseSettings):
    """Job workers: loops per process, and `skr worker`'s probe and metrics port."""

    model_config = _section("SKR_WORKER_")
    concurrency: int = Field(default=2, ge=1, le=64)
    http_port: int | None = Field(default=None, ge=1, le=65535)


class JobSettings(BaseSettings):
    """Job leases, attempts, and how often an idle worker looks for work."""

    model_config = _section("SKR_JOB_")
    lease_seconds: float = Field(default=10.0, ge=1)
    max_attempts: int = Field(default=3, ge=1)
    poll_seconds: float = Field(default=0.5, gt=0)


class SearchSettings(BaseSettings):
    """Ranking (``SearchService``): candidates per ranking and how they are fused."""

    model_config = _section("SKR_SEARCH_")
    candidates: int = Field(default=50, ge=10, le=1000)
    fusion: Literal["score", "rrf"] = "score"
    keyword_weight: float = Field(default=0.4, ge=0, le=1)
    rrf_k: int = Field(default=60, ge=1, validation_alias=_named("SKR_RRF_K"))


class CacheSettings(BaseSettings):
    """Cached search results and collection generations."""

    model_config = _section("SKR_CACHE_")
    ttl_seconds: float = Field(default=300.0, ge=0)
    max_entries: int = Field(default=10_000, ge=0)


class LLMSettings(BaseSettings):
    """Answers written by an OpenAI-compatible model (optional; ``OpenAIGenerator``)."""

    model_config = _section("SKR_LLM_")
    base_url: str | None = None
    api_key: SecretStr = SecretStr("not-needed")
    model: str = "gpt-4o-mini"
    timeout_seconds: float = Field(default=20.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=10.0, gt=0)
    max_concurrency: int = Field(default=4, ge=1, le=1000)
    queue_seconds: float = Field(default=2.0, ge=0)
    rewrite_timeout_seconds: float = Field(default=3.0, gt=0)


class Settings(BaseSettings):
    """Every knob SKR has. Built by the entrypoints, never at import time."""

    model_config = SettingsConfigDict(env_prefix="SKR_", extra="ignore", frozen=True)

    # where data lives
    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    redis_url: str | None = None

    # serving
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_url: str = "http://127.0.0.1:8000"
    api_workers: int = Field(default=1, ge=1, le=64)
    api_key: SecretStr | None = None
    max_request_bytes: int = Field(default=1_000_000, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    http_keep_alive_seconds: int = Field(default=75, ge=1, le=3600)
    readiness_cache_seconds: float = Field(default=2.0, ge=0)
    run_workers: bool = True

    # fetching and the network guard
    allow_private_networks: bool = False
    user_agent: str = "SKR/0.1 (+https://github.com/skr-project/skr; Smart Knowledge Repository)"

    db_pool: DatabasePoolSettings = Field(default_factory=DatabasePoolSettings)
    key: KeySettings = Field(default_factory=KeySettings)
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    crawl: CrawlSection = Field(default_factory=CrawlSection)
    ocr: OcrSettings = Field(default_factory=OcrSettings)
    image: ImageSettings = Field(default_factory=ImageSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    embed: EmbedSettings = Field(default_factory=EmbedSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    job: JobSettings = Field(default_factory=JobSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)

    @field_validator("database_url")
    @classmethod
    def _only_postgres(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("SKR_DATABASE_URL must be a postgresql:// URL")
        return value

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "skr.sqlite3"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "ann"


SECTIONS: dict[str, type[BaseSettings]] = {
    name: info.default_factory
    for name, info in Settings.model_fields.items()
    if isinstance(info.default_factory, type) and issubclass(info.default_factory, BaseSettings)
}


def environment_names() -> dict[str, str]:
    """Every environment variable SKR reads, with the setting it fills
    (``SKR_LLM_MODEL`` → ``llm.model``)."""
    names: dict[str, str] = {}
    for name in Settings.model_fields:
        section = SECTIONS.get(name)
        if section is None:
            names[f"SKR_{name.upper()}"] = name
            continue
        prefix = str(section.model_config.get("env_prefix", ""))
        for field_name, field_info in section.model_fields.items():
            alias = field_info.validation_alias
            env = (
                str(alias.choices[0])
                if isinstance(alias, AliasChoices)
                else f"{prefix}{field_name.upper()}"
            )
            names[env] = f"{name}.{field_name}"
    return names
