"""Measures three HNSW libraries (hnswlib, faiss-cpu, usearch) on the same vectors, in one run.

SKR uses hnswlib (``src/skr/adapters/sqlite/hnsw_index.py``: cosine space, M=16, ef_construction=100,
ef_search=80, and chunks are replaced by ``mark_deleted``). This puts a number beside that
choice. Every library gets the same clustered unit vectors, the same held-out queries and the
same HNSW parameters; each query is answered alone, on one thread, as a server answers it.

The libraries are not project dependencies; install them into a throwaway venv::

    python3 -m venv /tmp/annbench
    /tmp/annbench/bin/pip install numpy hnswlib==0.8.0 faiss-cpu usearch psutil
    /tmp/annbench/bin/python bench/bench_ann.py            # full run, a few minutes
    /tmp/annbench/bin/python bench/bench_ann.py --n 5000   # smoke run

Whichever of the three libraries is importable is measured; the others are reported as skipped.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

K = 10
M = 16
EF_CONSTRUCTIONS = (64, 100)  # DESIGN.md's measurement, SKR's HnswParams default
EF_SEARCHES = (40, 80)
RECALL_TARGET = 0.98
TIE_RATIO = 1.10  # closer than this, single-run query timings do not separate two libraries
WARMUP_QUERIES = 50
MIB = 1024 * 1024

Searcher = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Row:
    library: str
    ef_construction: int
    ef_search: int
    build_seconds: float
    size_bytes: int
    mean_ms: float
    p95_ms: float
    recall: float
    deleted: bool = False


# ---- data -----------------------------------------------------------------------------------


def make_data(
    n: int, queries: int, dim: int, clusters: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` base vectors and ``queries`` held-out queries: unit vectors drawn around random
    unit centres. ``noise`` is the expected norm of the gaussian added to a centre before
    normalising (so two points of one cluster have cosine about 1 / (1 + noise**2))."""
    rng = np.random.default_rng(seed)
    centres = _normalise(rng.standard_normal((clusters, dim), dtype=np.float32))

    def draw(count: int) -> np.ndarray:
        which = rng.integers(0, clusters, size=count)
        jitter = rng.standard_normal((count, dim), dtype=np.float32) * np.float32(
            noise / np.sqrt(dim)
        )
        return _normalise(centres[which] + jitter)

    return draw(n), draw(queries)


def _normalise(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def exact_top_k(
    base: np.ndarray, queries: np.ndarray, k: int, excluded: np.ndarray | None = None
) -> np.ndarray:
    """Brute-force top-``k`` labels by inner product (= cosine on unit vectors), in blocks."""
    out = np.empty((len(queries), k), dtype=np.int64)
    block = 256
    for start in range(0, len(queries), block):
        scores = queries[start : start + block] @ base.T
        if excluded is not None:
            scores[:, excluded] = -np.inf
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        out[start : start + block] = np.take_along_axis(part, order, axis=1)
    return out


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


# ---- timing ---------------------------------------------------------------------------------


def run_queries(search: Searcher, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels found and per-query milliseconds, one query per call."""
    for i in range(min(WARMUP_QUERIES, len(queries))):
        search(queries[i : i + 1])
    found = np.full((len(queries), K), -1, dtype=np.int64)
    times = np.empty(len(queries), dtype=np.float64)
    for i in range(len(queries)):
        q = queries[i : i + 1]
        t0 = time.perf_counter_ns()
        labels = search(q)
        times[i] = (time.perf_counter_ns() - t0) / 1e6
        found[i, : len(labels)] = labels
    return found, times


def measure(
    library: str,
    efc: int,
    efs: int,
    build_seconds: float,
    size: int,
    search: Searcher,
    queries: np.ndarray,
    truth: np.ndarray,
    *,
    deleted: bool = False,
) -> Row:
    found, times = run_queries(search, queries)
    return Row(
        library=library,
        ef_construction=efc,
        ef_search=efs,
        build_seconds=build_seconds,
        size_bytes=size,
        mean_ms=float(times.mean()),
        p95_ms=float(np.percentile(times, 95)),
        recall=recall_at_k(found, truth),
        deleted=deleted,
    )


# ---- libraries ------------------------------------------------------------------------------


def bench_hnswlib(
    mod: Any,
    base: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    truth_after_delete: np.ndarray,
    to_delete: np.ndarray,
    build_threads: int,
    workdir: Path,
) -> list[Row]:
    rows: list[Row] = []
    labels = np.arange(len(base), dtype=np.int64)
    for efc in EF_CONSTRUCTIONS:
        index = mod.Index(space="cosine", dim=base.shape[1])  # as SKR's adapter
        t0 = time.perf_counter()
        index.init_index(max_elements=len(base), ef_construction=efc, M=M)
        index.add_items(base, labels, num_threads=build_threads)
        build = time.perf_counter() - t0
        path = workdir / f"hnswlib-{efc}.bin"
        index.save_index(str(path))
        size = path.stat().st_size
        index.set_num_threads(1)

        def search(q: np.ndarray, index: Any = index) -> np.ndarray:
            return index.knn_query(q, k=K, num_threads=1)[0][0]

        for efs in EF_SEARCHES:
            index.set_ef(efs)
            rows.append(measure("hnswlib", efc, efs, build, size, search, queries, truth))
        for label in to_delete:
            index.mark_deleted(int(label))
        for efs in EF_SEARCHES:
            index.set_ef(efs)
            rows.append(
                measure(
                    "hnswlib",
                    efc,
                    efs,
                    build,
                    size,
                    search,
                    queries,
                    truth_after_delete,
                    deleted=True,
                )
            )
        del index
    return rows


def bench_faiss(
    mod: Any,
    base: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    build_threads: int,
    workdir: Path,
) -> list[Row]:
    rows: list[Row] = []
    for efc in EF_CONSTRUCTIONS:
        mod.omp_set_num_threads(build_threads)
        index = mod.IndexHNSWFlat(base.shape[1], M, mod.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = efc
        t0 = time.perf_counter()
        index.add(base)
        build = time.perf_counter() - t0
        path = workdir / f"faiss-{efc}.bin"
        mod.write_index(index, str(path))
        size = path.stat().st_size
        mod.omp_set_num_threads(1)

        def search(q: np.ndarray, index: Any = index) -> np.ndarray:
            return index.search(q, K)[1][0]

        for efs in EF_SEARCHES:
            index.hnsw.efSearch = efs
            rows.append(measure("faiss", efc, efs, build, size, search, queries, truth))
        del index
    return rows


def bench_usearch(
    mod: Any,
    base: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    build_threads: int,
    workdir: Path,
) -> list[Row]:
    rows: list[Row] = []
    keys = np.arange(len(base), dtype=np.uint64)
    for efc in EF_CONSTRUCTIONS:
        # dtype f32: usearch 2.x otherwise stores bf16, which would not compare like for like.
        index = mod.Index(
            ndim=base.shape[1],
            metric="cos",
            dtype="f32",
            connectivity=M,
            expansion_add=efc,
            expansion_search=EF_SEARCHES[0],
        )
        t0 = time.perf_counter()
        index.add(keys, base, threads=build_threads)
        build = time.perf_counter() - t0
        path = workdir / f"usearch-{efc}.usearch"
        index.save(str(path))
        size = path.stat().st_size

        def search(q: np.ndarray, index: Any = index) -> np.ndarray:
            return index.search(q[0], K, threads=1).keys

        for efs in EF_SEARCHES:
            index.expansion_search = efs
            rows.append(measure("usearch", efc, efs, build, size, search, queries, truth))
        del index
    return rows


# ---- report ---------------------------------------------------------------------------------


def version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


def format_table(rows: list[Row]) -> str:
    header = (
        f"{'library':<9} {'efC':>4} {'efS':>4} {'deleted':>8} {'build s':>8} "
        f"{'size MiB':>9} {'mean ms':>8} {'p95 ms':>7} {'recall@10':>10}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.library:<9} {r.ef_construction:>4} {r.ef_search:>4} "
            f"{'10%' if r.deleted else '-':>8} {r.build_seconds:>8.1f} "
            f"{r.size_bytes / MIB:>9.1f} {r.mean_ms:>8.3f} {r.p95_ms:>7.3f} {r.recall:>10.4f}"
        )
    return "\n".join(lines)


def conclusion(rows: list[Row]) -> str:
    intact = [r for r in rows if not r.deleted]
    if not intact:
        return "Conclusion: no library could be measured."
    good = [r for r in intact if r.recall >= RECALL_TARGET]
    if not good:
        best = max(intact, key=lambda r: r.recall)
        return (
            f"Conclusion: no configuration reached recall@10 >= {RECALL_TARGET}; the best was "
            f"{best.library} efC={best.ef_construction} efS={best.ef_search} "
            f"at {best.recall:.4f} ({best.mean_ms:.3f} ms/query)."
        )
    fastest = min(good, key=lambda r: r.mean_ms)
    text = (
        f"Conclusion: fastest at recall@10 >= {RECALL_TARGET} is {fastest.library} "
        f"(efC={fastest.ef_construction}, efS={fastest.ef_search}): "
        f"{fastest.mean_ms:.3f} ms/query, recall {fastest.recall:.4f}"
    )
    per_library = {}
    for r in sorted(good, key=lambda r: r.mean_ms):
        per_library.setdefault(r.library, r)
    others = [r for name, r in per_library.items() if name != fastest.library]
    if others:
        text += "; best of the others: " + ", ".join(
            f"{r.library} {r.mean_ms:.3f} ms ({r.mean_ms / fastest.mean_ms:.2f}x)" for r in others
        )
        tied = [r.library for r in others if r.mean_ms / fastest.mean_ms < TIE_RATIO]
        if tied:
            text += (
                f" -- {', '.join([fastest.library, *tied])} within {TIE_RATIO - 1:.0%} of each "
                "other: a tie at this precision"
            )
    missing = sorted({r.library for r in intact} - set(per_library))
    if missing:
        text += "; never reached the target: " + ", ".join(missing)
    return text + "."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="base vectors (default 50000)")
    parser.add_argument("--queries", type=int, default=1_000, help="held-out queries")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=500)
    parser.add_argument(
        "--noise", type=float, default=1.5, help="norm of the gaussian added to a centre"
    )
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--delete-fraction", type=float, default=0.10)
    parser.add_argument("--build-threads", type=int, default=2)
    args = parser.parse_args(argv)

    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    started = time.perf_counter()
    load_before = os.getloadavg()[0]

    modules: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, import_name in (
        ("hnswlib", "hnswlib"),
        ("faiss", "faiss"),
        ("usearch", "usearch.index"),
    ):
        try:
            modules[name] = importlib.import_module(import_name)
        except ImportError as exc:
            skipped[name] = str(exc)

    t0 = time.perf_counter()
    base, queries = make_data(args.n, args.queries, args.dim, args.clusters, args.noise, args.seed)
    truth = exact_top_k(base, queries, K)
    rng = np.random.default_rng(args.seed + 1)
    to_delete = rng.choice(args.n, size=int(args.n * args.delete_fraction), replace=False)
    truth_after_delete = exact_top_k(base, queries, K, excluded=to_delete)
    data_seconds = time.perf_counter() - t0
    nn_cos = float(np.mean(np.sum(queries * base[truth[:, 0]], axis=1)))
    tenth_cos = float(np.mean(np.sum(queries * base[truth[:, K - 1]], axis=1)))

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="skr-annbench-") as tmp:
        workdir = Path(tmp)
        if "hnswlib" in modules:
            rows += bench_hnswlib(
                modules["hnswlib"],
                base,
                queries,
                truth,
                truth_after_delete,
                to_delete,
                args.build_threads,
                workdir,
            )
        if "faiss" in modules:
            rows += bench_faiss(modules["faiss"], base, queries, truth, args.build_threads, workdir)
        if "usearch" in modules:
            rows += bench_usearch(
                modules["usearch"], base, queries, truth, args.build_threads, workdir
            )

    versions = {"hnswlib": "hnswlib", "faiss": "faiss-cpu", "usearch": "usearch"}
    print(f"command: {command}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}"
    )
    load_after = os.getloadavg()[0]
    contended = max(load_before, load_after) > (os.cpu_count() or 1) + 0.5
    print(
        f"load: 1-min load average {load_before:.2f} at start, {load_after:.2f} at end"
        + (
            " -- CONTENDED: other processes shared the CPUs; timings are inflated"
            if contended
            else ""
        )
    )
    print("libraries: " + ", ".join(f"{name} {version_of(versions[name])}" for name in modules))
    print("skipped: " + (", ".join(f"{n} ({why})" for n, why in skipped.items()) or "none"))
    print(
        f"data: {args.n} base + {args.queries} held-out queries, {args.dim}-d unit vectors around "
        f"{args.clusters} gaussian centres (noise {args.noise}, seed {args.seed}); exact top-{K} by "
        f"brute force in {data_seconds:.1f} s; mean cosine to 1st/10th true neighbour "
        f"{nn_cos:.3f}/{tenth_cos:.3f}"
    )
    print(
        f"params: M={M}, ef_construction in {EF_CONSTRUCTIONS}, ef_search in {EF_SEARCHES}; build on "
        f"{args.build_threads} threads, queries one at a time on 1 thread "
        f"({WARMUP_QUERIES} untimed warm-up queries); hnswlib space 'cosine' (as SKR), faiss "
        f"IndexHNSWFlat inner product, usearch metric 'cos' dtype f32"
    )
    print(
        f"deleted rows: hnswlib after mark_deleted of {len(to_delete)} random items "
        f"({args.delete_fraction:.0%}); recall against exact top-{K} of the remaining items"
    )
    print()
    print(format_table(rows))
    print()
    print(conclusion(rows))
    print(f"total runtime: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
