"""Prometheus metrics of one SKR process, in a registry of its own (never the global one)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

POOL_STATS_ALWAYS = (
    "pool_min",
    "pool_max",
    "pool_size",
    "pool_available",
    "requests_waiting",
    "requests_num",
    "requests_queued",
    "requests_wait_ms",
    "requests_errors",
)
LLM_BREAKER_STATES = ("closed", "open", "half-open")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Every metric SKR exports. Built by the container, one per process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._add_http(self.registry)
        self._add_ingest_and_jobs(self.registry)
        self._add_answers(self.registry)
        self._add_dependencies(self.registry)

    def _add_http(self, r: CollectorRegistry) -> None:
        """Requests served, their latency, and admission control."""
        self.http_requests = Counter(
            "skr_http_requests", "HTTP requests served", ["method", "route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "skr_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.http_shed = Counter(
            "skr_http_shed",
            "Requests refused with 503 by admission control, by endpoint class",
            ["gate"],
            registry=r,
        )
        self.admission = Gauge(
            "skr_admission",
            "Requests running and waiting at each admission gate, and its current limit",
            ["gate", "state"],
            registry=r,
        )

    def _add_ingest_and_jobs(self, r: CollectorRegistry) -> None:
        """Pages ingested, the job queue, embedding and the cache."""
        self.ingest_pages = Counter(
            "skr_ingest_pages", "Pages ingested, by outcome", ["outcome"], registry=r
        )
        self.ingest_chunks = Counter("skr_ingest_chunks", "Chunks stored", registry=r)
        self.job_queue_depth = Gauge("skr_job_queue_depth", "Jobs waiting to run", registry=r)
        self.job_queue_oldest_age = Gauge(
            "skr_job_queue_oldest_age_seconds",
            "How long the longest-waiting runnable queued job has waited (0 when none)",
            registry=r,
        )
        self.embed_batch_seconds = Histogram(
            "skr_embed_batch_duration_seconds",
            "Time of one call to the embedder: a query, or one page's chunks (the model "
            "cuts a call into batches of SKR_EMBED_BATCH_SIZE texts)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.embed_texts = Counter("skr_embed_texts", "Texts embedded", registry=r)
        self.cache_lookups = Counter(
            "skr_cache_lookups",
            "Cache reads, by what is cached (the key's prefix: qe query embeddings, "
            "s search results) and result (hit or miss)",
            ["cache", "result"],
            registry=r,
        )

    def _add_answers(self, r: CollectorRegistry) -> None:
        """Answers given and the citations they lost."""
        self.citations_dropped = Counter(
            "skr_citations_dropped",
            "Citations dropped because their quote is not in the cited chunk",
            registry=r,
        )
        self.answers = Counter(
            "skr_answers",
            "Answers given, by mode and degradation",
            ["mode", "degraded"],
            registry=r,
        )

    def _add_dependencies(self, r: CollectorRegistry) -> None:
        """The database pool, the LLM's circuit breaker, readiness."""
        self.db_pool = Gauge(
            "skr_db_pool",
            "PostgreSQL pool statistics (psycopg_pool get_stats: sizes now, counters since start)",
            ["stat"],
            registry=r,
        )
        self.llm_breaker_state = Gauge(
            "skr_llm_breaker_state",
            "1 for the LLM circuit breaker's current state (closed, open, half-open), else 0; "
            "absent without SKR_LLM_BASE_URL",
            ["state"],
            registry=r,
        )
        self.dependency_up = Gauge(
            "skr_dependency_up",
            "1 when the dependency answered the last readiness check (store, redis)",
            ["dependency"],
            registry=r,
        )

    def set_pool_stats(self, stats: Mapping[str, int]) -> None:
        """psycopg_pool counts a figure only once it happened; waits are always exported."""
        for name in POOL_STATS_ALWAYS:
            self.db_pool.labels(name).set(stats.get(name, 0))
        for name, value in stats.items():
            self.db_pool.labels(name).set(value)

    def set_llm_breaker_state(self, state: str) -> None:
        for name in LLM_BREAKER_STATES:
            self.llm_breaker_state.labels(name).set(1 if name == state else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
