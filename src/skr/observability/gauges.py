"""The gauges read at scrape time: the job queue, dependencies, the pool and the LLM breaker."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from skr.domain.errors import SKRError
from skr.observability.metrics import Metrics
from skr.observability.readiness import ReadinessCheck
from skr.ports.job_queue import JobQueue


@runtime_checkable
class HasBreaker(Protocol):
    """A client behind a circuit breaker (the OpenAI-compatible generator)."""

    @property
    def breaker_state(self) -> str: ...


class ScrapeGauges:
    """Sets the gauges every SKR process that serves /metrics exports, just before it
    renders them; nothing here polls in the background."""

    def __init__(
        self,
        *,
        metrics: Metrics,
        queue: JobQueue,
        readiness: ReadinessCheck,
        pool_stats: Callable[[], Mapping[str, int]] | None = None,
        generator: object | None = None,
    ) -> None:
        self._metrics = metrics
        self._queue = queue
        self._readiness = readiness
        self._pool_stats = pool_stats
        self._generator = generator if isinstance(generator, HasBreaker) else None

    async def refresh(self) -> None:
        gauges = self._metrics
        try:
            gauges.job_queue_depth.set(await self._queue.depth())
            gauges.job_queue_oldest_age.set(await self._queue.oldest_queued_age_seconds())
        except SKRError:
            gauges.job_queue_depth.set(float("nan"))
            gauges.job_queue_oldest_age.set(float("nan"))
        report = await self._readiness.report()
        for name, state in report.checks.items():
            gauges.dependency_up.labels(name).set(1 if state == "ok" else 0)
        if self._pool_stats is not None:
            gauges.set_pool_stats(self._pool_stats())
        if self._generator is not None:
            gauges.set_llm_breaker_state(self._generator.breaker_state)
