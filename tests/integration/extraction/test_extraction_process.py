"""Pages extracted in a real worker process (``SKR_EXTRACTION_PROCESSES``): the same
result as on a thread, errors that say the same, and a worker that dies costs its page
only."""

from __future__ import annotations

import os
import signal
import sys

import anyio
import psutil
import pytest

from skr.adapters.memory.cache import MemoryCache
from skr.domain.errors import FetchError
from skr.services.ingest import IngestService, PageOutcomeKind
from tests.fakes.fake_embedder import FakeEmbedder
from tests.fakes.fake_fetcher import DictFetcher
from tests.fakes.fake_store import InMemoryStore

pytestmark = pytest.mark.anyio

URL = "http://docs.test/blueprints"
SMALL_URL = "http://docs.test/small"
PAGE = """<html><head><title>Blueprints</title></head><body><main>
<h1>Modular Applications with Blueprints</h1>
<p>A blueprint is a way to organise a group of related views and other code. Rather than
registering views directly with an application, they are registered with a blueprint.</p>
<h2>Registering Blueprints</h2>
<p>Then the blueprint is registered with the application when it is available.</p>
<p>See <a href="/views">views</a>.</p>
</main></body></html>"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def service(
    pages: dict[str, str], processes: int, niceness: int = 0
) -> tuple[IngestService, InMemoryStore]:
    store = InMemoryStore()
    ingest = IngestService(
        fetcher=DictFetcher(pages), store=store, embedder=FakeEmbedder(), cache=MemoryCache(10),
        max_tokens=64, extraction_processes=processes, extraction_niceness=niceness,
    )  # fmt: skip
    return ingest, store


async def stored_texts(pages: dict[str, str], processes: int) -> list[tuple[str, str]]:
    ingest, store = service(pages, processes)
    collection = await store.ensure_collection("default", "t")
    outcome = await ingest.ingest_page(URL, collection.id)
    assert outcome.kind is PageOutcomeKind.INDEXED
    return sorted((c.heading_path, c.text) for c, _ in store.chunks.values())


async def test_a_page_extracted_in_a_process_is_stored_as_one_extracted_on_a_thread() -> None:
    in_process = await stored_texts({URL: PAGE}, processes=1)
    assert in_process == await stored_texts({URL: PAGE}, processes=0)
    assert any("register" in text for _, text in in_process)


async def test_an_extraction_error_in_the_process_reads_as_it_does_on_a_thread() -> None:
    binary = {URL: "\x00\x01\x02\x03" * 2000}
    for processes in (1, 0):
        ingest, store = service(binary, processes)
        collection = await store.ensure_collection("default", "t")
        with pytest.raises(FetchError, match="binary data"):
            await ingest.ingest_page(URL, collection.id)


def kill_new_extraction_workers(before: set[int]) -> int:
    """SIGKILL the anyio worker processes of this test process not in ``before``."""
    killed = 0
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid not in before and "anyio.to_process" in " ".join(child.cmdline()):
                os.kill(child.pid, signal.SIGKILL)
                killed += 1
        except psutil.Error:
            continue
    return killed


def test_a_worker_that_dies_fails_its_page_and_the_next_page_is_read() -> None:
    """On an event loop of its own, so that its process pool is new: the one worker it
    starts is the one killed, whatever idle workers earlier tests left."""
    paragraphs = "".join(f"<p>Paragraph {i} about blueprints and views.</p>" for i in range(30_000))
    big = f"<html><body><main>{paragraphs}</main></body></html>"
    before = {child.pid for child in psutil.Process().children(recursive=True)}

    async def main() -> None:
        ingest, store = service({URL: big, SMALL_URL: PAGE}, processes=1)
        collection = await store.ensure_collection("default", "t")
        failure: list[BaseException] = []

        async def ingest_big() -> None:
            try:
                await ingest.ingest_page(URL, collection.id)
            except FetchError as exc:
                failure.append(exc)

        async with anyio.create_task_group() as group:
            group.start_soon(ingest_big)
            await anyio.sleep(0.1)  # the page is being extracted: 0.3 s or more
            assert kill_new_extraction_workers(before) == 1
        assert len(failure) == 1 and "crashed" in str(failure[0])
        outcome = await ingest.ingest_page(SMALL_URL, collection.id)
        assert outcome.kind is PageOutcomeKind.INDEXED

    anyio.run(main)


def extraction_workers() -> dict[int, psutil.Process]:
    found = {}
    for child in psutil.Process().children(recursive=True):
        try:
            if "anyio.to_process" in " ".join(child.cmdline()):
                found[child.pid] = child
        except psutil.Error:
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice: Linux")
async def test_the_extraction_process_runs_at_a_lower_priority_than_the_server() -> None:
    ingest, store = service({URL: PAGE}, processes=1, niceness=7)
    collection = await store.ensure_collection("default", "t")
    assert (await ingest.ingest_page(URL, collection.id)).kind is PageOutcomeKind.INDEXED
    lowered = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 7)
    # idle workers of earlier tests may be there too, at the server's priority
    assert lowered in {worker.nice() for worker in extraction_workers().values()}
