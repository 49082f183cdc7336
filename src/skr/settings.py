"""SKR's settings, read from the environment (prefix ``SKR_``), each documented in the README."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("skr", appauthor=False))


class Settings(BaseSettings):
    """Every knob SKR has. Built by the entrypoints, never at import time."""

    model_config = SettingsConfigDict(env_prefix="SKR_", extra="ignore", frozen=True)

    # where data lives
    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    redis_url: str | None = None
    db_pool_min_size: int = Field(default=1, ge=0, le=100)
    db_pool_max_size: int = Field(default=10, ge=1, le=500)
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0)

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

    # API keys (`skr keys`): per-key limits, and how soon a revocation takes effect
    key_rate_per_second: float = Field(default=20.0, gt=0)
    key_rate_burst: int = Field(default=40, ge=1)
    key_max_active_jobs: int = Field(default=10, ge=1)
    key_cache_seconds: float = Field(default=5.0, ge=0)

    # admission control: per class of endpoint, requests at once, waiting, and how long
    admission_search_concurrency: int = Field(default=8, ge=1, le=10_000)
    admission_search_queue: int = Field(default=64, ge=0, le=100_000)
    admission_ask_concurrency: int = Field(default=4, ge=1, le=10_000)
    admission_ask_queue: int = Field(default=32, ge=0, le=100_000)
    admission_write_concurrency: int = Field(default=8, ge=1, le=10_000)
    admission_write_queue: int = Field(default=32, ge=0, le=100_000)
    admission_read_concurrency: int = Field(default=16, ge=1, le=10_000)
    admission_read_queue: int = Field(default=64, ge=0, le=100_000)
    admission_stream_concurrency: int = Field(default=256, ge=1, le=100_000)
    admission_wait_seconds: float = Field(default=0.5, ge=0)
    admission_max_in_flight: int = Field(default=64, ge=1, le=1_000_000)
    # search, ask and read: run fewer at once while admitted requests take longer than
    # tolerance × their unloaded 90th percentile + slack, and then wait no longer than that
    admission_adaptive: bool = True
    admission_latency_tolerance: float = Field(default=1.5, ge=1.0)
    admission_latency_slack_seconds: float = Field(default=0.01, ge=0)
    admission_unready_sheds: int = Field(default=20, ge=1)
    admission_unready_window_seconds: float = Field(default=2.0, gt=0)

    # fetching and the network guard
    allow_private_networks: bool = False
    user_agent: str = "SKR/0.1 (+https://github.com/skr-project/skr; Smart Knowledge Repository)"
    fetch_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    fetch_read_timeout_seconds: float = Field(default=15.0, gt=0)
    fetch_total_timeout_seconds: float = Field(default=30.0, gt=0)
    fetch_max_bytes: int = Field(default=10_000_000, ge=1024)
    fetch_max_redirects: int = Field(default=5, ge=0, le=20)

    # crawling
    crawl_concurrency: int = Field(default=4, ge=1, le=64)
    crawl_host_concurrency: int = Field(default=2, ge=1, le=64)
    crawl_host_interval_seconds: float = Field(default=0.0, ge=0)
    crawl_max_delay_seconds: float = Field(default=30.0, ge=0)
    crawl_url_attempts: int = Field(default=3, ge=1, le=20)
    crawl_url_lease_seconds: float = Field(default=120.0, ge=1)
    crawl_max_pages_limit: int = Field(default=10_000, ge=1)

    # images
    ocr_enabled: bool = True
    ocr_languages: str = "eng"
    ocr_timeout_seconds: float = Field(default=10.0, gt=0)
    image_max_per_page: int = Field(default=20, ge=0, le=1000)
    image_max_bytes: int = Field(default=5_000_000, ge=1024)
    image_min_side_pixels: int = Field(default=48, ge=1)

    # extraction: worker processes that read pages (0: a thread of this process)
    extraction_processes: int = Field(default=1, ge=0, le=64)

    # chunking and embedding
    chunk_max_tokens: int = Field(default=256, ge=16, le=256)
    embed_batch_size: int = Field(default=32, ge=1, le=512)
    embed_max_batch_tokens: int = Field(default=256, ge=256, le=65536)
    embed_threads: int = Field(default=1, ge=1, le=64)
    embed_parallel_batches: int = Field(default=2, ge=1, le=64)
    embed_query_session: bool = True
    ingest_niceness: int = Field(default=10, ge=0, le=19)

    # jobs
    run_workers: bool = True
    worker_concurrency: int = Field(default=2, ge=1, le=64)
    worker_http_port: int | None = Field(default=None, ge=1, le=65535)
    job_lease_seconds: float = Field(default=10.0, ge=1)
    job_max_attempts: int = Field(default=3, ge=1)
    job_poll_seconds: float = Field(default=0.5, gt=0)

    # search and cache
    search_candidates: int = Field(default=50, ge=10, le=1000)
    search_fusion: Literal["score", "rrf"] = "score"
    search_keyword_weight: float = Field(default=0.4, ge=0, le=1)
    rrf_k: int = Field(default=60, ge=1)
    cache_ttl_seconds: float = Field(default=300.0, ge=0)
    cache_max_entries: int = Field(default=10_000, ge=0)
    readiness_cache_seconds: float = Field(default=2.0, ge=0)

    # answers written by an OpenAI-compatible model (optional)
    llm_base_url: str | None = None
    llm_api_key: SecretStr = SecretStr("not-needed")
    llm_model: str = "gpt-4o-mini"
    llm_timeout_seconds: float = Field(default=20.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    llm_breaker_failures: int = Field(default=5, ge=1)
    llm_breaker_reset_seconds: float = Field(default=10.0, gt=0)
    llm_max_concurrency: int = Field(default=4, ge=1, le=1000)
    llm_queue_seconds: float = Field(default=2.0, ge=0)

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
