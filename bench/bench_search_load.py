"""Search under concurrent load through the API, embedded vs PostgreSQL (1, 8, 64 clients),
pgvector recall@10 against exact search on the stored vectors, and pool waits."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.servers import SHARED_SITE, SkrServer, free_port, static_site
from tests.fixtures.stores import POSTGRES_URL

from bench.bench_pipeline import QUERIES, ingest_all, percentile
from skr.adapters.onnx_embedder import OnnxMiniLMEmbedder

NO_CACHE = {"SKR_CACHE_TTL_SECONDS": "0", "SKR_LOG_LEVEL": "warning"}


async def load(url: str, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(n: int, http: httpx.AsyncClient) -> None:
        i = 0
        while time.monotonic() < deadline:
            q = f"{QUERIES[(n + i) % len(QUERIES)]} {n}-{i}"
            started = time.perf_counter()
            response = await http.get("/v1/search", params={"q": q, "k": 10})
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            i += 1

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        started = time.monotonic()
        await asyncio.gather(*(client(n, http) for n in range(clients)))
        elapsed = time.monotonic() - started
    errors = sum(v for k, v in statuses.items() if k != 200)
    return {
        "clients": clients,
        "qps": len(latencies) / elapsed,
        "p50": percentile(latencies, 0.5),
        "p95": percentile(latencies, 0.95),
        "p99": percentile(latencies, 0.99),
        "errors": errors,
        "requests": len(latencies),
    }


def pool_stat(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    found = re.search(rf'skr_db_pool{{stat="{name}"}} ([0-9.e+]+)', text)
    return float(found.group(1)) if found else 0.0


def pgvector_recall(database_url: str, queries: int) -> float:
    embedder = OnnxMiniLMEmbedder.loaded(threads=2)
    vectors = asyncio.run(embedder.embed([f"{q}" for q in QUERIES][:queries]))
    embedder.close()
    sql = (
        "SELECT id FROM chunks WHERE collection_id = %s ORDER BY embedding <=> %s::vector LIMIT 10"
    )
    found = 0
    with psycopg.connect(database_url) as conn:
        (collection,) = conn.execute("SELECT id FROM collections LIMIT 1").fetchone()  # type: ignore[misc]
        for vector in vectors:
            literal = "[" + ",".join(f"{x:.7f}" for x in np.asarray(vector)) + "]"
            with conn.transaction():
                conn.execute("SELECT set_config('hnsw.ef_search', '80', true)")
                conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
                approx = {r[0] for r in conn.execute(sql, (collection, literal))}
            with conn.transaction():
                conn.execute("SET LOCAL enable_indexscan = off")
                exact = {r[0] for r in conn.execute(sql, (collection, literal))}
            found += len(approx & exact)
    return found / (10 * len(vectors))


def run_mode(
    name: str, server: SkrServer, base: str, args: argparse.Namespace
) -> list[dict[str, float]]:
    server.start()
    try:
        pages, chunks, seconds = ingest_all(server, base, args.site)
        print(f"{name}: ingested {pages} pages, {chunks} chunks in {seconds:.0f} s", flush=True)
        rows = []
        for clients in args.clients:
            waits_before = pool_stat(server.url, "requests_wait_ms")
            waited_before = pool_stat(server.url, "requests_waiting")
            row = asyncio.run(load(server.url, clients, args.seconds))
            row["pool_wait_ms_total"] = pool_stat(server.url, "requests_wait_ms") - waits_before
            row["pool_waiting_now"] = pool_stat(server.url, "requests_waiting") - waited_before
            rows.append(row)
            print(f"  {clients:>3} clients: {row['qps']:.1f} q/s p50 {row['p50']:.0f} ms "
                  f"p95 {row['p95']:.0f} ms p99 {row['p99']:.0f} ms errors {row['errors']:.0f}",
                  flush=True)  # fmt: skip
        return rows
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--site", type=Path, default=SHARED_SITE)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="skr-load-"))
    name = f"skr_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        embedded = SkrServer(work / "e", free_port(), work / "e.log", **NO_CACHE)
        pg = SkrServer(work / "p", free_port(), work / "p.log", SKR_DATABASE_URL=database_url,
                       SKR_REDIS_URL="redis://127.0.0.1:6379/0", **NO_CACHE)  # fmt: skip
        assert pg.cli("migrate").returncode == 0
        with static_site(args.site) as (base, _):
            results = {"embedded": run_mode("embedded", embedded, base, args),
                       "postgres": run_mode("postgres", pg, base, args)}  # fmt: skip
        recall = pgvector_recall(database_url, len(QUERIES))
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    print(f"\ncommand: python bench/bench_search_load.py --seconds {args.seconds:g}")
    print("mode      clients   q/s    p50 ms  p95 ms  p99 ms  errors  pool wait ms (total)")
    for mode, rows in results.items():
        for r in rows:
            print(f"{mode:<9} {r['clients']:>7.0f} {r['qps']:>6.1f} {r['p50']:>8.1f} {r['p95']:>7.1f} "
                  f"{r['p99']:>7.1f} {r['errors']:>7.0f}  {r['pool_wait_ms_total']:>8.0f}")  # fmt: skip
    print(f"pgvector recall@10 vs exact (ef_search 80, {len(QUERIES)} queries): {recall:.3f}")


if __name__ == "__main__":
    main()
