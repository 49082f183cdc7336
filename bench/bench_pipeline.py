"""Embedder throughput vs ingest pipeline throughput on the Flask docs, search latency in
process and over HTTP, and the serving process's memory — all in one run, on loopback."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.servers import SHARED_SITE, SkrServer, free_port, static_site

from skr.adapters.onnx_embedder import OnnxMiniLMEmbedder
from skr.domain.models import DEFAULT_COLLECTION, DEFAULT_TENANT
from skr.services.chunking import chunk_embedding_text, split_into_chunks
from skr.services.extraction.html import extract_page
from skr.settings import CacheSettings, Settings
from skr.wiring.container import build_container

QUERIES = [
    "register a blueprint", "application factory", "url_for build URLs", "jinja templates",
    "request context", "application context", "configuration from environment variables",
    "testing with the test client", "error handlers 404", "logging configuration",
    "sessions and cookies", "file uploads", "message flashing", "deploying to production",
    "signals", "class-based views", "JSON responses", "static files", "CLI commands",
    "async views", "security headers", "debug mode", "database connection sqlite",
    "blueprint static folder", "before_request hook", "teardown appcontext",
]  # fmt: skip


def pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "_static" not in p.parts)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def embedder_alone(site: Path) -> tuple[int, float, float, float]:
    """Chunks of every page, embedded by the embedder alone (after extraction): how many,
    the seconds embedding took, the seconds preparing them took, and the CPU the embedding
    used in core-seconds (every thread of this process)."""
    settings = Settings()  # the server's embedder, as configured
    embedder = OnnxMiniLMEmbedder.loaded(
        threads=settings.embed.threads,
        parallel_batches=settings.embed.parallel_batches,
        batch_size=settings.embed.batch_size,
        max_batch_tokens=settings.embed.max_batch_tokens,
    )
    texts: list[str] = []
    started = time.perf_counter()
    for path in pages(site):
        page = extract_page(path.read_bytes(), f"http://site.test/{path.name}")
        for d in split_into_chunks(page, embedder, 256):
            texts.append(chunk_embedding_text(page.title, d.heading_path, d.text))
    prepare = time.perf_counter() - started
    started, cpu_started = time.perf_counter(), time.process_time()
    await embedder.embed(texts)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    embedder.close()
    return len(texts), seconds, prepare, cpu


def ingest_all(server: SkrServer, base: str, site: Path) -> tuple[int, int, float]:
    urls = [f"{base}/{p.relative_to(site).as_posix()}" for p in pages(site)]
    started = time.perf_counter()
    jobs = [httpx.post(f"{server.url}/v1/ingest", json={"url": u}).json()["job_id"] for u in urls]
    pending = set(jobs)
    while pending:  # one light request a second, so polling does not steal the CPU measured
        time.sleep(1.0)
        listed = httpx.get(f"{server.url}/v1/jobs", params={"limit": 200}).json()["jobs"]
        done = {j["id"] for j in listed if j["status"] in {"succeeded", "failed"}}
        pending -= done
    seconds = time.perf_counter() - started
    chunks = 0
    cursor = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        body = httpx.get(f"{server.url}/v1/documents", params=params).json()
        chunks += sum(d["chunk_count"] + d["image_count"] for d in body["documents"])
        cursor = body["next_cursor"]
        if cursor is None:
            return len(urls), chunks, seconds


def http_latencies(server: SkrServer, rounds: int) -> list[float]:
    samples = []
    with httpx.Client(base_url=server.url) as client:
        for i in range(rounds):
            q = f"{QUERIES[i % len(QUERIES)]} {i}"  # distinct: no cache hits
            started = time.perf_counter()
            client.get("/v1/search", params={"q": q, "k": 10}).raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
    return samples


async def in_process_latencies(data_dir: Path, rounds: int) -> list[float]:
    settings = Settings(data_dir=data_dir, run_workers=False, cache=CacheSettings(max_entries=0))
    samples = []
    async with build_container(settings) as container:
        collection = await container.adapters.backend.store.get_collection(
            DEFAULT_COLLECTION, DEFAULT_TENANT
        )
        for i in range(rounds):
            q = f"{QUERIES[i % len(QUERIES)]} {i}"
            started = time.perf_counter()
            await container.services.search.search(collection, q, 10, None)
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300, help="search queries per mode")
    parser.add_argument("--site", type=Path, default=SHARED_SITE)
    args = parser.parse_args()
    if not args.site.is_dir():
        sys.exit(f"the Flask docs are not at {args.site}; pass --site")
    n_chunks, embed_s, prepare_s, _ = asyncio.run(embedder_alone(args.site))
    work = Path(tempfile.mkdtemp(prefix="skr-bench-"))
    server = SkrServer(
        work / "data", free_port(), work / "server.log", SKR_CACHE_MAX_ENTRIES="0",
        SKR_LOG_LEVEL="warning", SKR_WORKER_CONCURRENCY=os.environ.get("WORKERS", "2"),
    )  # fmt: skip
    with static_site(args.site) as (base, _):
        server.start()
        assert server.process is not None
        proc = psutil.Process(server.process.pid)
        rss_idle = proc.memory_info().rss
        n_pages, stored_chunks, ingest_s = ingest_all(server, base, args.site)
        http = http_latencies(server, args.rounds)
        rss_after = proc.memory_info().rss
        hwm = _peak_rss_kb(server.process.pid)
        server.stop()
    in_proc = asyncio.run(in_process_latencies(work / "data", args.rounds))
    results = {
        "embedder_chunks": n_chunks,
        "embedder_chunks_per_s": n_chunks / embed_s,
        "extract_and_chunk_seconds": prepare_s,
        "pipeline_pages": n_pages,
        "pipeline_chunks": stored_chunks,
        "pipeline_seconds": ingest_s,
        "pipeline_chunks_per_s": stored_chunks / ingest_s,
        "search_in_process_ms": {"p50": percentile(in_proc, 0.5), "p95": percentile(in_proc, 0.95)},
        "search_http_ms": {"p50": percentile(http, 0.5), "p95": percentile(http, 0.95)},
        "serve_rss_mb": {"idle": rss_idle / 2**20, "after": rss_after / 2**20, "peak": hwm / 1024},
    }
    ratio = results["pipeline_chunks_per_s"] / results["embedder_chunks_per_s"]
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"embedder alone     : {n_chunks} chunks in {embed_s:.1f} s = {n_chunks / embed_s:.1f} chunks/s"
    )
    print(f"  (extract + chunk of the same pages, single thread: {prepare_s:.1f} s)")
    print(
        f"ingest pipeline    : {n_pages} pages, {stored_chunks} chunks in {ingest_s:.1f} s = {stored_chunks / ingest_s:.1f} chunks/s"
    )
    print(f"pipeline / embedder: {ratio:.2f}")
    print(
        f"search in process  : p50 {percentile(in_proc, 0.5):.1f} ms, p95 {percentile(in_proc, 0.95):.1f} ms ({len(in_proc)} uncached queries)"
    )
    print(
        f"search over HTTP   : p50 {percentile(http, 0.5):.1f} ms, p95 {percentile(http, 0.95):.1f} ms ({len(http)} uncached queries)"
    )
    print(
        f"serving RSS        : idle {rss_idle / 2**20:.0f} MB, after ingest+search {rss_after / 2**20:.0f} MB, peak {hwm / 1024:.0f} MB"
    )
    print(f"(mean of HTTP latencies {statistics.mean(http):.1f} ms)")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(results, indent=2))


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    main()
