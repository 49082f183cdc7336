"""`skr eval` as a user runs it, with the real model, on a tiny BEIR dataset written here:
embedded (a temporary data directory) and on PostgreSQL (a fresh collection, emptied after)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.fixtures.stores import POSTGRES_URL

pytestmark = pytest.mark.slow

CORPUS = {
    "photosynthesis": ("Photosynthesis", "Chloroplasts turn sunlight, water and CO2 into sugar."),
    "insulin": ("Insulin", "The pancreas releases insulin, which lowers blood glucose."),
    "earthquakes": ("Earthquakes", "Tectonic plates grinding along faults cause earthquakes."),
    "vaccines": ("Vaccines", "Vaccines train the immune system to recognise a virus."),
    "black-holes": ("Black holes", "Not even light escapes the gravity of a black hole."),
    "coral": ("Coral reefs", "Warm water bleaches coral by expelling its algae."),
    "antibiotics": ("Antibiotics", "Overusing antibiotics breeds resistant bacteria."),
    "sleep": ("Sleep", "Deep sleep consolidates the memories of the day."),
}
QUERIES = {
    "1": "How do plants make sugar from sunlight?",
    "2": "Which hormone lowers blood sugar?",
    "3": "What causes earthquakes?",
}
QRELS = {"1": "photosynthesis", "2": "insulin", "3": "earthquakes"}
METRICS = {"nDCG@10", "Recall@10", "Recall@100", "MRR@10"}


def write_dataset(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    corpus = [{"_id": i, "title": t, "text": x} for i, (t, x) in CORPUS.items()]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    queries = [{"_id": i, "text": t} for i, t in QUERIES.items()]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    lines = [f"{q}\t{d}\t1\n" for q, d in QRELS.items()]
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(lines))
    return root


def skr(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SKR_")}
    return subprocess.run(
        [sys.executable, "-m", "skr", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture
def database_url() -> Iterator[str]:
    """A migrated database of its own, dropped afterwards."""
    name = f"skr_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrated = skr("migrate", SKR_DATABASE_URL=url)
        assert migrated.returncode == 0, migrated.stderr
        yield url
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def check_json_report(result: subprocess.CompletedProcess[str], store: str) -> None:
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["store"] == store and report["split"] == "test"
    assert report["documents"] == len(CORPUS) and report["queries"] == len(QUERIES)
    assert set(report["rankings"]) == {"keyword", "vector", "hybrid"}
    for ranking in report["rankings"].values():
        assert set(ranking["metrics"]) >= METRICS
        assert all(0.0 <= ranking["metrics"][m] <= 1.0 for m in METRICS)
        assert ranking["p50_ms"] <= ranking["p95_ms"]
    # three easy questions: the real model puts each one's document first
    assert report["rankings"]["vector"]["metrics"]["MRR@10"] == pytest.approx(1.0)
    # and each extractive answer quotes it
    citations = report["answer_citations"]
    assert (citations["queries"], citations["relevant"], citations["rate"]) == (3, 3, 1.0)


def test_eval_embedded_prints_a_table_and_json(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "tiny")
    data_dir = tmp_path / "data"
    table = skr("eval", str(dataset), SKR_DATA_DIR=str(data_dir))
    assert table.returncode == 0, table.stderr
    assert "3 queries, 8 documents" in table.stdout
    for word in ("keyword", "vector", "hybrid", *METRICS):
        assert word in table.stdout
    assert "answers citing a relevant document: 3/3" in " ".join(table.stdout.split())
    check_json_report(skr("eval", str(dataset), "--json", SKR_DATA_DIR=str(data_dir)), "sqlite")
    assert not data_dir.exists()  # a temporary data directory, not SKR_DATA_DIR


def test_eval_on_postgresql_analyzes_and_leaves_no_documents(
    tmp_path: Path, database_url: str
) -> None:
    dataset = write_dataset(tmp_path / "tiny")
    check_json_report(
        skr("eval", str(dataset), "--json", SKR_DATABASE_URL=database_url), "postgresql"
    )
    with psycopg.connect(database_url) as conn:
        [(documents,)] = conn.execute("SELECT count(*) FROM documents").fetchall()
        names = [r[0] for r in conn.execute("SELECT name FROM collections").fetchall()]
        [(analyzed,)] = conn.execute(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'chunks'"
        ).fetchall()
    assert documents == 0
    assert analyzed is not None  # statistics refreshed after loading, before the queries
    assert any(name.startswith("eval-") for name in names)


def test_eval_of_a_directory_that_is_not_a_dataset_fails_cleanly(tmp_path: Path) -> None:
    result = skr("eval", str(tmp_path), SKR_DATA_DIR=str(tmp_path / "data"))
    assert result.returncode == 1
    message = " ".join(result.stderr.split())  # rich wraps long lines
    assert "corpus.jsonl is missing" in message and "Traceback" not in message
