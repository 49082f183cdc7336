"""Does the embedder keep its speed better while extraction shares the cores if it runs
two single-thread batches side by side instead of one two-thread batch? (issue 4)

    python bench/embed_parallelism.py

Embeds the Flask docs' chunks four ways: {one session with 2 intra-op threads, one
caller} and {one session with 1 intra-op thread, 2 callers}, each alone and with a thread
extracting pages in a loop meanwhile; prints chunks/s and the ratio under contention.
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.servers import SHARED_SITE

from bench.bench_pipeline import pages
from skr.adapters.onnx_embedder import OnnxMiniLMEmbedder
from skr.services.chunking import chunk_embedding_text, split_into_chunks
from skr.services.extraction.html import extract_page


def chunk_texts(embedder: OnnxMiniLMEmbedder) -> tuple[list[str], list[bytes]]:
    texts, bodies = [], []
    for path in pages(SHARED_SITE):
        body = path.read_bytes()
        bodies.append(body)
        page = extract_page(body, f"http://site.test/{path.name}")
        texts += [
            chunk_embedding_text(page.title, d.heading_path, d.text)
            for d in split_into_chunks(page, embedder, 256)
        ]
    return texts, bodies


def run(embedder: OnnxMiniLMEmbedder, texts: list[str], callers: int) -> float:
    """Seconds to embed ``texts`` in batches of four, ``callers`` batches at a time."""
    tokenizer = embedder.tokenizer
    encoded = tokenizer.encode_for_model(texts)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    batches = [[encoded[i] for i in order[n : n + 4]] for n in range(0, len(order), 4)]
    started = time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(embedder._embed_batch, batches))  # the model call itself
    return time.perf_counter() - started


def main() -> None:
    results = {}
    for threads, callers in [(2, 1), (1, 2)]:
        embedder = OnnxMiniLMEmbedder.loaded(threads=threads)
        texts, bodies = chunk_texts(embedder)
        for contended in (False, True):
            stop = threading.Event()

            def extract_forever(stop: threading.Event = stop, bodies: list[bytes] = bodies) -> None:
                while not stop.is_set():
                    for n, body in enumerate(bodies):
                        if stop.is_set():
                            return
                        extract_page(body, f"http://site.test/{n}.html")

            worker = threading.Thread(target=extract_forever) if contended else None
            if worker:
                worker.start()
            seconds = run(embedder, texts, callers)
            stop.set()
            if worker:
                worker.join()
            rate = len(texts) / seconds
            results[(threads, callers, contended)] = rate
            label = f"{threads} intra-op thread(s), {callers} caller(s)"
            label += ", extraction alongside" if contended else ", alone"
            print(f"{label:55s} {rate:5.1f} chunks/s", flush=True)
        embedder.close()
    for threads, callers in [(2, 1), (1, 2)]:
        ratio = results[(threads, callers, True)] / results[(threads, callers, False)]
        print(f"{threads} thread(s) x {callers} caller(s): contended / alone {ratio:.2f}")


if __name__ == "__main__":
    main()
