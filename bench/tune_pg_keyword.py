"""PostgreSQL keyword rankings on SciFact's *train* queries, keyword alone, document level
(each corpus document one row: title as label A, text as C; no vectors, no skr ingest):
the reason migration 4 ranks by BM25 over sparse vectors instead of ``ts_rank``.

    python bench/tune_pg_keyword.py load   # seconds: the corpus into database skr_pg_keyword
    python bench/tune_pg_keyword.py run    # ~1 min: ts_rank, IDF-weighted ts_rank, BM25 variants

Only ``qrels/train.tsv`` is read; the test queries are for ``skr eval`` alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skr.domain.query_terms import keyword_terms
from skr.services.evaluation import load_beir, mean_metrics

SERVER = "postgresql://postgres@127.0.0.1:5432"
DATABASE = "skr_pg_keyword"
DATASET = ROOT.parent / "shared" / "data" / "scifact"
DIMENSIONS = 536870912  # as migration 4: the first 29 bits of a lexeme's md5, plus one

# what SKR ranked with before migration 4
TS_RANK = """
SELECT c.id, ts_rank('{0.1, 0.5, 0.75, 1.0}', c.tsv, q.query) AS rank
FROM probe c, websearch_to_tsquery('english', %(words)s) AS q (query)
WHERE c.tsv @@ q.query ORDER BY rank DESC LIMIT 100
"""
# per query word: its postings through the GIN index, its document frequency counted over
# them, ts_rank of that word alone weighted by the word's IDF
IDF_TS_RANK = """
WITH terms AS (
    SELECT DISTINCT q.query FROM unnest(%(terms)s::text[]) AS t (word),
        plainto_tsquery('english', t.word) AS q (query) WHERE q.query <> ''::tsquery
),
postings AS (
    SELECT c.id, ts_rank('{0.1, 0.5, 0.75, 1.0}', c.tsv, terms.query) AS tf,
        count(*) OVER (PARTITION BY terms.query) AS df
    FROM terms JOIN probe c ON c.tsv @@ terms.query
)
SELECT id, sum(ln(1 + (%(n)s - df + 0.5) / (df + 0.5)) * tf) AS rank
FROM postings GROUP BY id ORDER BY rank DESC LIMIT 100
"""
# migration 4's ranking: stored BM25 term weights · the query's IDF vector
BM25 = """
SELECT c.id, (c.bm25 <#> v.weights) * -1 AS rank
FROM probe c, websearch_to_tsquery('english', %(words)s) AS q (query),
    probe_bm25_query(%(words)s) AS v (weights)
WHERE c.tsv @@ q.query ORDER BY rank DESC LIMIT 100
"""


def load() -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as pg:
        pg.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        pg.execute(f"CREATE DATABASE {DATABASE}")
    dataset = load_beir(DATASET, "train")
    with psycopg.connect(f"{SERVER}/{DATABASE}") as pg:
        pg.execute("CREATE EXTENSION vector")
        pg.execute(
            "CREATE TABLE probe (id text PRIMARY KEY, title text, text text, "
            "tsv tsvector GENERATED ALWAYS AS (setweight(to_tsvector('english', title), 'A') "
            "|| setweight(to_tsvector('english', text), 'C')) STORED, bm25 sparsevec)"
        )
        with pg.cursor().copy("COPY probe (id, title, text) FROM STDIN") as copy:
            for d in dataset.corpus:
                copy.write_row((d.id, d.title, d.text))
        pg.execute("CREATE INDEX ON probe USING gin (tsv)")
        pg.execute(
            "CREATE FUNCTION probe_dimension(lexeme text) RETURNS integer LANGUAGE sql "
            "IMMUTABLE RETURN (('x' || left(md5(lexeme), 8))::bit(32)::int8 & 536870911)::int + 1"
        )
        pg.execute(
            f"""CREATE FUNCTION probe_bm25_query(words text) RETURNS sparsevec
            LANGUAGE sql STABLE BEGIN ATOMIC
            WITH terms AS (SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', words))),
            n AS (SELECT count(*) AS n FROM probe),
            weights AS (
                SELECT probe_dimension(t.lexeme) AS i,
                    sum(ln(1 + (n.n - d.df + 0.5) / (d.df + 0.5))) AS idf
                FROM terms t CROSS JOIN n CROSS JOIN LATERAL (
                    SELECT count(*) AS df FROM probe p
                    WHERE p.tsv @@ plainto_tsquery('simple', t.lexeme)) d
                GROUP BY 1
            )
            SELECT ('{{' || coalesce(string_agg(i || ':' || idf, ',' ORDER BY i), '')
                || '}}/{DIMENSIONS}')::sparsevec FROM weights;
            END"""
        )
        pg.execute("ANALYZE probe")


def set_document_weights(
    pg: psycopg.Connection, k1: float, b: float, pivot: float, title: float
) -> None:
    """Every row's BM25 term weights, as migration 4's ``skr_bm25_document`` with these
    parameters (there: k1 1.2, b 0.75, pivot 150, title 2)."""
    pg.execute(
        f"""UPDATE probe SET bm25 = (
        WITH terms AS (
            SELECT probe_dimension(t.lexeme) AS i,
                (SELECT sum(CASE w WHEN 'A' THEN {title} WHEN 'B' THEN 1.5 ELSE 1.0 END)
                    FROM unnest(t.weights) AS w) AS tf
            FROM unnest(probe.tsv) AS t
        ),
        size AS (SELECT coalesce(sum(tf), 0) AS len FROM terms),
        merged AS (SELECT i, sum(tf) AS tf FROM terms GROUP BY i)
        SELECT ('{{' || coalesce(string_agg(
            m.i || ':' || (m.tf * ({k1} + 1) / (m.tf + {k1} * (1 - {b} + {b} * s.len / {pivot}))),
            ',' ORDER BY m.i), '') || '}}/{DIMENSIONS}')::sparsevec
        FROM merged m RIGHT JOIN size s ON true)"""
    )
    pg.commit()


def run(name: str, statement: str, pg: psycopg.Connection, documents: int) -> None:
    dataset = load_beir(DATASET, "train")
    runs: dict[str, list[str]] = {}
    seconds = []
    for query_id, text in dataset.queries.items():
        terms = keyword_terms(text)
        params = {"words": " OR ".join(terms), "terms": terms, "n": documents}
        started = time.perf_counter()
        rows = pg.execute(statement, params).fetchall()  # type: ignore[arg-type]
        seconds.append(time.perf_counter() - started)
        runs[query_id] = [row[0] for row in rows]
    metrics = mean_metrics(runs, dataset.qrels, (10, 100))
    p50, p95 = np.percentile(seconds, [50, 95]) * 1000
    print(
        f"{name:44s} nDCG@10 {metrics['nDCG@10']:.4f}  Recall@100 {metrics['Recall@100']:.4f}"
        f"  p50 {p50:5.1f} ms  p95 {p95:5.1f} ms",
        flush=True,
    )


def tune() -> None:
    with psycopg.connect(f"{SERVER}/{DATABASE}") as pg:
        [(documents,)] = pg.execute("SELECT count(*) FROM probe").fetchall()
        [(length,)] = pg.execute(
            "SELECT avg((SELECT sum(cardinality(t.positions)) FROM unnest(tsv) t)) FROM probe"
        ).fetchall()
        print(f"{documents} documents, {float(length):.0f} lexemes on average", flush=True)
        run("ts_rank (before migration 4)", TS_RANK, pg, documents)
        run("ts_rank per word x IDF", IDF_TS_RANK, pg, documents)
        for k1, b, pivot, title in [
            (1.2, 0.75, 150.0, 2.0),  # as shipped
            (1.2, 0.75, 100.0, 2.0),
            (1.2, 0.75, 150.0, 1.0),
            (0.9, 0.4, 150.0, 2.0),
            (1.5, 0.9, 150.0, 2.0),
        ]:
            set_document_weights(pg, k1, b, pivot, title)
            run(f"BM25 k1={k1} b={b} pivot={pivot:.0f} title={title}", BM25, pg, documents)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["load", "run"])
    args = parser.parse_args()
    load() if args.command == "load" else tune()


if __name__ == "__main__":
    main()
