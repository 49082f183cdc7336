"""How the embedder's batch cap (``SKR_EMBED_MAX_BATCH_TOKENS``) changes its throughput,
on all of a site's chunks in one call and on one call per page, as a crawl makes them
(issue 4).

    python bench/embed_batching.py --max-batch-tokens 1024 512 256

For each cap: the Flask docs' chunks embedded in one call, then one call per page with
four pages at a time (a crawl's default concurrency). Nothing else runs meanwhile. The
embedder's other settings are the server's (``Settings()``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.servers import SHARED_SITE

from bench.bench_pipeline import pages
from skr.adapters.onnx_embedder import OnnxMiniLMEmbedder
from skr.services.chunking import chunk_embedding_text, split_into_chunks
from skr.services.extraction.html import extract_page
from skr.settings import Settings

PAGES_AT_ONCE = 4


def load(max_batch_tokens: int) -> OnnxMiniLMEmbedder:
    settings = Settings()
    return OnnxMiniLMEmbedder.loaded(
        threads=settings.embed.threads,
        parallel_batches=settings.embed.parallel_batches,
        batch_size=settings.embed.batch_size,
        max_batch_tokens=max_batch_tokens,
    )


def page_texts(embedder: OnnxMiniLMEmbedder) -> list[list[str]]:
    texts = []
    for path in pages(SHARED_SITE):
        page = extract_page(path.read_bytes(), f"http://site.test/{path.name}")
        chunks = split_into_chunks(page, embedder, 256)
        texts.append([chunk_embedding_text(page.title, d.heading_path, d.text) for d in chunks])
    return [t for t in texts if t]


async def per_page(embedder: OnnxMiniLMEmbedder, texts: list[list[str]]) -> None:
    waiting = list(texts)

    async def caller() -> None:
        while waiting:
            await embedder.embed(waiting.pop(0))

    await asyncio.gather(*(caller() for _ in range(PAGES_AT_ONCE)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-batch-tokens", type=int, nargs="+", default=[1024, 512, 256])
    args = parser.parse_args()
    print(f"command: python bench/embed_batching.py {' '.join(sys.argv[1:])}")
    for cap in args.max_batch_tokens:
        embedder = load(cap)
        texts = page_texts(embedder)
        flat = [t for page in texts for t in page]
        started = time.perf_counter()
        await embedder.embed(flat)
        one = len(flat) / (time.perf_counter() - started)
        started = time.perf_counter()
        await per_page(embedder, texts)
        paged = len(flat) / (time.perf_counter() - started)
        embedder.close()
        print(
            f"max_batch_tokens {cap:5}: {len(flat)} chunks; one call {one:5.1f} chunks/s; "
            f"one call per page, {PAGES_AT_ONCE} at a time {paged:5.1f} chunks/s "
            f"({paged / one:.2f} of one call)",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
