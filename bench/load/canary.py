"""A canary: one client, on one kept-alive connection, outside Locust, searching SKR at a
steady pace while a load phase runs, and logging what each search took.

Locust measures from inside a load generator that shares the machine's two cores with
SKR; when it spawns 900 users in two seconds (a spike's onset), its own greenlets and new
connections wait, and that wait lands in its response times. The canary is a separate,
idle-most-of-the-time process, so its latencies are what one user sees of SKR while the
others load it. Its mix is the readers': popular queries (mostly answered from the cache)
and every fifth a query asked once (which SKR must embed and rank).

Run by bench/load/run_load.py beside each phase; never imported by SKR or its tests.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import signal
import sys
import time
import urllib.parse
from pathlib import Path

from scenario import POPULAR_QUERIES, TAIL_TOPICS

POPULAR = POPULAR_QUERIES[:12]  # the most asked: nearly always answered from the cache
TAIL = TAIL_TOPICS[:8]


def queries() -> itertools.cycle[tuple[str, str]]:
    """(kind, query): four popular, then one never asked before, and so on."""
    mix: list[tuple[str, str]] = []
    for n, popular in enumerate(POPULAR):
        mix.append(("popular", popular))
        if n % 4 == 3:
            mix.append(("once", ""))
    return itertools.cycle(mix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="SKR's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, required=True, help="CSV: time,kind,status,ms")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between starts")
    parser.add_argument("--seconds", type=float, default=3600, help="stop after this long")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    target = urllib.parse.urlsplit(args.url)
    host, port = target.hostname or "127.0.0.1", target.port or 80
    connection = http.client.HTTPConnection(host, port, timeout=30)
    ends = time.monotonic() + args.seconds
    once = itertools.count()
    with args.out.open("w", buffering=1) as out:
        out.write("time,kind,status,ms\n")
        next_start = time.monotonic()
        for kind, query in queries():
            if time.monotonic() >= ends:
                break
            if kind == "once":
                n = next(once)
                query = f"{TAIL[n % len(TAIL)]} canary {n}"
            path = "/v1/search?" + urllib.parse.urlencode({"q": query, "k": 10})
            sent, began = time.time(), time.perf_counter()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=30)
            took = (time.perf_counter() - began) * 1000
            out.write(f"{sent:.3f},{kind},{status},{took:.2f}\n")
            next_start += args.interval
            time.sleep(max(0.0, next_start - time.monotonic()))


if __name__ == "__main__":
    main()
