"""Where SKR's CPU goes under load: py-spy's collapsed stacks (``--format raw``) summed by
layer (the first layer found walking from the running frame towards the root) and by
the running function."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

# (layer, substrings of a frame "function (file:line)"), in the order they are tried
LAYERS = [
    ("embedding model (onnxruntime)", ["onnxruntime", "onnx_embedder"]),
    ("tokenisation", ["tokenizers", "tokeniz"]),
    ("vector search (hnswlib)", ["hnswlib", "hnsw_index"]),
    ("SQLite (FTS5 and reads/writes)", ["sqlite"]),
    ("PostgreSQL driver and pool", ["psycopg", "postgres_"]),
    ("Redis client", ["redis"]),
    ("page fetch, extraction, chunking, OCR (ingest)",
     ["trafilatura", "lxml", "services/extraction", "services/chunking", "services/ingest",
      "tesseract", "services/crawl", "httpx", "httpcore", "polite_fetcher", "boilerplate",
      "pdf", "sitemaps", "robots"]),
    ("JSON and pydantic (validation, serialisation)", ["pydantic", "json", "encoders", "serializ"]),
    ("search and ask services (fusion, ranking, answers)",
     ["skr/services", "skr/domain", "skr/adapters"]),
    ("HTTP server and framework (uvicorn, starlette, fastapi)",
     ["uvicorn", "h11", "httptools", "starlette", "fastapi", "middleware"]),
    ("thread hand-offs: waiting and waking (threading.Condition)", ["threading.py"]),
    ("event loop: uvloop and httptools in C (I/O, HTTP parsing)", ["asyncio", "anyio"]),
]  # fmt: skip
_COUNT = re.compile(r"^(.*) (\d+)$")


def summarise(path: Path, top: int = 12) -> dict[str, Any]:
    layers: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        found = _COUNT.match(line.strip())
        if not found:
            continue
        frames, count = found.group(1).split(";"), int(found.group(2))
        total += count
        layers[_layer(frames)] += count
        functions[_short(frames[-1])] += count
    share = {k: round(100 * v / total, 1) for k, v in layers.most_common()} if total else {}
    return {
        "samples": total,
        "layers": share,
        "functions": {k: round(100 * v / total, 1) for k, v in functions.most_common(top)},
    }


def _layer(frames: list[str]) -> str:
    for frame in reversed(frames):
        lowered = frame.lower()
        for layer, needles in LAYERS:
            if any(n in lowered for n in needles):
                return layer
    return "other"


def _short(frame: str) -> str:
    """``function (.../package/module.py:12)`` as ``function (package/module.py)``."""
    found = re.match(r"^(.*) \((.*?):\d+\)$", frame)
    if not found:
        return frame
    parts = Path(found.group(2)).parts
    return f"{found.group(1)} ({'/'.join(parts[-2:])})"


def markdown(summary: dict[str, Any], seconds: int, target: str) -> list[str]:
    lines = [
        "",
        f"## Where SKR's CPU goes (py-spy, {seconds} s of the load phase, {target})",
        "",
        f"{summary['samples']:,} samples of running (not idle) threads.",
        "",
        "| layer (first found from the running frame up) | share |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v}% |" for k, v in summary["layers"].items()]
    lines += ["", "| running function | share |", "| --- | --- |"]
    lines += [f"| `{k}` | {v}% |" for k, v in summary["functions"].items()]
    return lines
