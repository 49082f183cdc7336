"""What one request of each kind costs an embedded `skr serve`: CPU (user + system, of
the server process) and latency, one request at a time on one kept-alive connection,
on the Flask docs crawled from loopback (depth 2, at most 80 pages, as `make load`
seeds). This is the arithmetic behind the load runs: requests/s × CPU per request is
the share of the machine a request mix needs.

    python bench/bench_request_costs.py [--requests 300] [--data-dir DIR]

With ``--data-dir`` the crawled knowledge base is kept there and reused by later runs.
All traffic goes to 127.0.0.1."""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.servers import SHARED_SITE, SkrServer, free_port, static_site

from bench.load.run_load import seed
from bench.load.scenario import POPULAR_QUERIES, POPULAR_QUESTIONS, TAIL_ASPECTS, TAIL_TOPICS

Request = Callable[[httpx.Client, int], httpx.Response]


def kinds() -> dict[str, Request]:
    """Each kind of request the load harness sends; "new" ones are never repeated, as the
    load's long tail (`bench/load/locustfile.py`), so nothing is cached for them."""
    serial = itertools.count()

    def tail(i: int) -> str:
        n = next(serial)
        return f"{TAIL_TOPICS[n % len(TAIL_TOPICS)]} {TAIL_ASPECTS[i % len(TAIL_ASPECTS)]} {n}"

    return {
        "search, cached": lambda c, i: c.get("/v1/search", params={"q": POPULAR_QUERIES[0]}),
        "search, new query": lambda c, i: c.get("/v1/search", params={"q": tail(i)}),
        "ask, cached passages": lambda c, i: c.post(
            "/v1/ask", json={"question": POPULAR_QUESTIONS[0]}
        ),
        "ask, new question": lambda c, i: c.post(
            "/v1/ask", json={"question": f"How do I use the {tail(i)}?"}
        ),
        "list documents": lambda c, i: c.get("/v1/documents", params={"limit": 20}),
        "list jobs": lambda c, i: c.get("/v1/jobs", params={"limit": 20}),
        "livez (no work)": lambda c, i: c.get("/livez"),
    }


def measure(process: psutil.Process, client: httpx.Client, send: Request, n: int) -> list[float]:
    """CPU ms per request, then latency p50, p95, p99 (ms)."""
    for i in range(10):  # warm: first use of a route, a connection, the model
        send(client, i).raise_for_status()
    before = process.cpu_times()
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        send(client, i).raise_for_status()
        latencies.append((time.perf_counter() - started) * 1000)
    after = process.cpu_times()
    cpu = (after.user + after.system - before.user - before.system) * 1000 / n
    latencies.sort()
    return [cpu, *(latencies[min(n - 1, int(n * q))] for q in (0.5, 0.95, 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="of each kind")
    parser.add_argument("--data-dir", type=Path, help="keep (and reuse) the knowledge base")
    parser.add_argument("--site", type=Path, default=SHARED_SITE)
    args = parser.parse_args()
    if not args.site.is_dir():
        sys.exit(f"the Flask docs are not at {args.site}; pass --site")
    work = Path(tempfile.mkdtemp(prefix="skr-bench-costs-"))
    data = args.data_dir or work / "data"
    server = SkrServer(data, free_port(), work / "server.log", SKR_LOG_LEVEL="warning")
    rows = []
    try:
        with static_site(args.site) as (site, _):
            server.start()
            with httpx.Client(base_url=server.url, timeout=60) as client:
                if not client.get("/v1/documents", params={"limit": 1}).json()["documents"]:
                    print(seed(server.url, site)["summary"], file=sys.stderr)
                assert server.process is not None
                process = psutil.Process(server.process.pid)
                for name, send in kinds().items():
                    rows.append((name, measure(process, client, send, args.requests)))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.requests} requests of each kind, one at a time\n")
    print("| request | CPU ms / request | p50 ms | p95 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- |")
    for name, (cpu, p50, p95, p99) in rows:
        print(f"| {name} | {cpu:.2f} | {p50:.1f} | {p95:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
