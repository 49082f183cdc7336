"""PoliteFetcher on fakes: per-host spacing, robots.txt Crawl-delay, and Retry-After holds."""

from __future__ import annotations

import anyio
import pytest

from skr.adapters.memory.host_limiter import InMemoryHostLimiter
from skr.domain.errors import FetchError
from skr.services.crawl.polite_fetcher import PoliteFetcher
from tests.fakes.fake_fetcher import DictFetcher

pytestmark = pytest.mark.anyio

A, B = "http://a.test/page", "http://b.test/page"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def polite(fetcher: DictFetcher, interval: float = 0.0) -> PoliteFetcher:
    return PoliteFetcher(
        fetcher, InMemoryHostLimiter(), interval_seconds=interval, per_host_concurrency=2,
        max_delay_seconds=1.0,
    )  # fmt: skip


async def timed(fetcher: PoliteFetcher, url: str) -> float:
    began = anyio.current_time()
    await fetcher.fetch(url)
    return anyio.current_time() - began


async def test_requests_to_one_host_are_spaced_but_not_across_hosts() -> None:
    fetcher = polite(DictFetcher({A: "a", B: "b"}), interval=0.3)
    assert await timed(fetcher, A) < 0.1
    assert await timed(fetcher, B) < 0.1
    assert await timed(fetcher, A) >= 0.25


async def test_a_crawl_delay_counts_from_the_request_that_read_it() -> None:
    fetcher = polite(DictFetcher({A: "a"}))
    await fetcher.fetch(A)
    await fetcher.set_crawl_delay("a.test", 0.4)
    assert fetcher.interval_for("a.test") == 0.4
    assert await timed(fetcher, A) >= 0.35
    await fetcher.set_crawl_delay("a.test", 60)
    assert fetcher.interval_for("a.test") == 1.0  # capped


async def test_a_429_holds_the_host_off_for_its_retry_after() -> None:
    inner = DictFetcher({A: "a", B: "b"})
    inner.failures[A] = [FetchError("429", status=429, transient=True, retry_after_seconds=0.5)]
    fetcher = polite(inner)
    with pytest.raises(FetchError):
        await fetcher.fetch(A)
    assert await timed(fetcher, B) < 0.1  # other hosts are not held
    assert await timed(fetcher, A) >= 0.4


async def test_a_slow_host_is_asked_slower() -> None:
    inner = DictFetcher({A: "a"})
    original = inner.fetch

    async def slow(url: str, **kwargs: object) -> object:
        await anyio.sleep(0.3)
        return await original(url, **kwargs)  # type: ignore[arg-type]

    inner.fetch = slow  # type: ignore[method-assign]
    fetcher = polite(inner)
    assert fetcher.interval_for("a.test") == 0.0
    await fetcher.fetch(A)
    assert 0.25 <= fetcher.interval_for("a.test") <= 1.0
