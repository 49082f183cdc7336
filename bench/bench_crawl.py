"""A full crawl of the Flask docs on loopback through `skr serve`: pages/s and chunks/s
against the embedder's own throughput on the same chunks, then a re-crawl with nothing
changed, timed against the first crawl. One run, ratios in the same run."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.servers import SHARED_SITE, SkrServer, free_port, static_site

from bench.bench_pipeline import embedder_alone


def crawl(server: SkrServer, base: str, max_pages: int) -> tuple[dict[str, object], float]:
    body = {"url": f"{base}/index.html", "crawl": {"max_depth": 5, "max_pages": max_pages}}
    started = time.perf_counter()
    job_id = httpx.post(f"{server.url}/v1/ingest", json=body).json()["job_id"]
    while True:  # one light request every half second, so polling does not steal the CPU
        time.sleep(0.5)
        job = httpx.get(f"{server.url}/v1/jobs/{job_id}").json()
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            return job, time.perf_counter() - started  # type: ignore[no-any-return]


def cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU in core-seconds: of a process itself, of its live descendants
    (the extraction process) and of the children it reaped (tesseract runs)."""
    process = psutil.Process(pid)
    own = process.cpu_times()
    live = 0.0
    for child in process.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        live += times.user + times.system
    return {
        "server": own.user + own.system,
        "live children": live,
        "reaped children": own.children_user + own.children_system,
    }


def job_times(job: dict[str, object]) -> dict[str, float]:
    """Seconds from queued to started (a worker's pickup) and started to finished, from
    the job's own timestamps: the wall times above include the 0.5 s polling steps."""
    at = {
        k: dt.datetime.fromisoformat(str(job[k]))
        for k in ("created_at", "started_at", "finished_at")
    }
    return {
        "queued_to_started_s": (at["started_at"] - at["created_at"]).total_seconds(),
        "started_to_finished_s": (at["finished_at"] - at["started_at"]).total_seconds(),
    }


def stored_chunks(server: SkrServer) -> tuple[int, int]:
    documents = chunks = 0
    cursor = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        body = httpx.get(f"{server.url}/v1/documents", params=params).json()
        documents += len(body["documents"])
        chunks += sum(d["chunk_count"] for d in body["documents"])
        cursor = body["next_cursor"]
        if cursor is None:
            return documents, chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--site", type=Path, default=SHARED_SITE)
    parser.add_argument("--max-pages", type=int, default=500)
    parser.add_argument(
        "--env", action="append", default=[], metavar="SKR_X=V", help="a setting for skr serve"
    )
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    if not args.site.is_dir():
        sys.exit(f"the Flask docs are not at {args.site}; pass --site")
    n_chunks, embed_s, _, embedder_cpu = asyncio.run(embedder_alone(args.site))
    embedder_rate = n_chunks / embed_s
    work = Path(tempfile.mkdtemp(prefix="skr-bench-crawl-"))
    server = SkrServer(
        work / "data", free_port(), work / "server.log", SKR_LOG_LEVEL="warning", **env
    )
    with static_site(args.site) as (base, _):
        server.start()
        try:
            cpu_before = cpu_seconds(server.process.pid)
            first, first_s = crawl(server, base, args.max_pages)
            cpu_after = cpu_seconds(server.process.pid)
            documents, chunks = stored_chunks(server)
            again, again_s = crawl(server, base, args.max_pages)
        finally:
            server.stop()
    cores = psutil.cpu_count() or 1
    cpu_parts = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
    crawl_cpu = sum(cpu_parts.values())
    c1, c2 = first["counters"], again["counters"]  # type: ignore[index]
    first_job = job_times(first)
    crawl_rate = c1["chunks_embedded"] / first_s  # type: ignore[index]
    results = {
        "embedder_chunks": n_chunks,
        "embedder_chunks_per_s": embedder_rate,
        "crawl_status": first["status"],
        "crawl_counters": c1,
        "crawl_seconds": first_s,
        "crawl_pages_per_s": documents / first_s,
        "crawl_chunks_per_s": crawl_rate,
        "crawl_vs_embedder": crawl_rate / embedder_rate,
        "stored_documents": documents,
        "stored_chunks": chunks,
        "recrawl_counters": c2,
        "recrawl_seconds": again_s,
        "recrawl_vs_crawl": again_s / first_s,
        "crawl_job": first_job,
        "embedder_alone_cpu_s": embedder_cpu,
        "crawl_cpu_s": crawl_cpu,
        "crawl_cpu_s_by_process": cpu_parts,
        "cpu_cores": cores,
    }
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"embedder alone : {n_chunks} chunks in {embed_s:.1f} s = {embedder_rate:.1f} chunks/s")
    print(
        f"first crawl    : {first['status']}, {documents} pages, {c1['chunks_embedded']} chunks "  # type: ignore[index]
        f"embedded in {first_s:.1f} s = {documents / first_s:.2f} pages/s, {crawl_rate:.1f} chunks/s"
    )
    print(f"  counters     : {c1}")
    print(
        f"  job          : queued → started {first_job['queued_to_started_s']:.3f} s, "
        f"started → finished {first_job['started_to_finished_s']:.1f} s (the server's clock)"
    )
    print(f"crawl / embedder throughput: {crawl_rate / embedder_rate:.2f}")
    print(
        f"  CPU          : the crawl's server and its children used {crawl_cpu:.1f} "
        f"core-seconds, {crawl_cpu / first_s / cores:.0%} of {cores} cores over the crawl; "
        f"on {cores} cores the crawl cannot take less than {crawl_cpu / cores:.1f} s"
    )
    print("  by process   : " + ", ".join(f"{k} {v:.1f}" for k, v in cpu_parts.items()))
    # the model's share of the crawl, at the embedder alone's CPU per chunk
    model_cpu = embedder_cpu / n_chunks * c1["chunks_embedded"]  # type: ignore[index]
    fastest = crawl_cpu / cores
    print(
        f"  of which the model about {model_cpu:.1f} (the embedder alone's CPU per chunk) "
        f"and the rest of the pipeline {crawl_cpu - model_cpu:.1f}: with every core busy "
        f"all the time, crawl / embedder could reach "
        f"{c1['chunks_embedded'] / fastest / embedder_rate:.2f}"  # type: ignore[index]
    )
    print(
        f"re-crawl, nothing changed: {again_s:.1f} s = {again_s / first_s:.3f} of the first crawl"
    )
    print(f"  counters     : {c2}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "crawl.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
