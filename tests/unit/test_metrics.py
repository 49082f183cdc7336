"""The metrics of issue 8: cache hits and misses, embedder calls, queue age, pool waits,
and the LLM breaker, as /metrics shows them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from fastapi.testclient import TestClient

from skr.adapters.memory.cache import MemoryCache
from skr.adapters.openai_generator import OpenAIGenerator
from skr.entrypoints.api.app import create_app
from skr.observability.metered_ports import MeteredCache, TimedEmbedder, cache_label
from skr.observability.metrics import Metrics
from skr.settings import Settings
from tests.fakes.fake_container import fake_container_factory
from tests.fakes.fake_embedder import FakeEmbedder


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


def test_the_cache_wrapper_counts_hits_and_misses_by_what_is_cached() -> None:
    metrics = Metrics()
    cache = MeteredCache(MemoryCache(10), metrics.cache_lookups)

    async def scenario() -> None:
        assert await cache.get("qe:model:abc") is None
        await cache.set("qe:model:abc", b"v", 60)
        assert await cache.get("qe:model:abc") == b"v"
        assert await cache.get("s:coll:1:hybrid") is None
        assert await cache.generation("coll") == await cache.generation("coll")
        await cache.bump_generation("coll")

    anyio.run(scenario)
    lookups = "skr_cache_lookups_total"
    assert sample(metrics, lookups, {"cache": "qe", "result": "hit"}) == 1
    assert sample(metrics, lookups, {"cache": "qe", "result": "miss"}) == 1
    assert sample(metrics, lookups, {"cache": "s", "result": "miss"}) == 1


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("qe:m:1", "qe"),
        ("s:c:1", "s"),
        ("nocolon", "other"),
        ("Upper:x", "other"),
        ("a" * 40 + ":x", "other"),
    ],
)
def test_cache_labels_stay_a_small_set(key: str, label: str) -> None:
    assert cache_label(key) == label


def test_the_embedder_wrapper_times_each_call_and_counts_texts() -> None:
    metrics = Metrics()
    inner = FakeEmbedder()
    embedder = TimedEmbedder(inner, metrics.embed_batch_seconds, metrics.embed_texts)
    assert (embedder.model_id, embedder.dimensions) == (inner.model_id, inner.dimensions)
    assert embedder.max_tokens == inner.max_tokens
    assert embedder.count_tokens("two words") == inner.count_tokens("two words")

    async def scenario() -> None:
        vectors = await embedder.embed(["one", "two", "three"])
        assert vectors.shape == (3, inner.dimensions)
        await embedder.embed([])  # nothing to embed is not a call to time

    anyio.run(scenario)
    assert sample(metrics, "skr_embed_batch_duration_seconds_count") == 1
    assert sample(metrics, "skr_embed_texts_total") == 3


def test_pool_waits_are_exported_before_any_wait_happened() -> None:
    metrics = Metrics()
    metrics.set_pool_stats({"pool_size": 3, "pool_available": 2, "connections_num": 3})
    assert sample(metrics, "skr_db_pool", {"stat": "requests_waiting"}) == 0
    assert sample(metrics, "skr_db_pool", {"stat": "requests_wait_ms"}) == 0
    assert sample(metrics, "skr_db_pool", {"stat": "pool_size"}) == 3
    assert sample(metrics, "skr_db_pool", {"stat": "connections_num"}) == 3


def _generator() -> OpenAIGenerator:
    # never called: the breaker's state is read, no request is made
    return OpenAIGenerator(
        base_url="http://127.0.0.1:9/v1", api_key="k", model="m", timeout_seconds=1,
        max_retries=0, breaker_failures=1, breaker_reset_seconds=30,
    )  # fmt: skip


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    factory = fake_container_factory({}, generator=_generator(), run_worker=False)
    with TestClient(create_app(Settings(data_dir=tmp_path), factory)) as test_client:
        yield test_client


def test_metrics_show_queue_age_and_breaker_state(client: TestClient) -> None:
    text = client.get("/metrics").text
    assert "skr_job_queue_oldest_age_seconds 0.0" in text
    assert 'skr_llm_breaker_state{state="closed"} 1.0' in text
    assert 'skr_llm_breaker_state{state="open"} 0.0' in text
    assert 'skr_llm_breaker_state{state="half-open"} 0.0' in text
    client.post("/v1/ingest", json={"url": "http://docs.test/page"})  # no worker: it waits
    text = client.get("/metrics").text
    assert "skr_job_queue_depth 1.0" in text
    [age] = [line for line in text.splitlines() if line.startswith("skr_job_queue_oldest_age")]
    assert float(age.split()[1]) >= 0.0
