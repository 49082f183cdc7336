"""`skr eval`: a BEIR-layout dataset through the normal text ingest and search, scored.

The evaluation, the ingest pipeline and the wiring (numpy, the embedder, the stores) are
imported when the command runs, not when the command line starts: every other command,
and `skr --help`, would pay for them."""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import anyio
import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from skr.entrypoints.cli.output import err, fail, out
from skr.settings import CacheSettings, LLMSettings, Settings

if TYPE_CHECKING:
    from skr.domain.models import Collection
    from skr.services.evaluation import BeirDataset, EvalReport
    from skr.services.ingest import TextDocument
    from skr.wiring.container import Container

_DELETE_PAGE = 500

eval_app = typer.Typer()


@eval_app.command("eval")
def eval_(
    directory: Annotated[
        Path,
        typer.Argument(
            file_okay=False,
            metavar="DIRECTORY",
            help="corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv.",
        ),
    ],
    split: Annotated[
        str, typer.Option(metavar="SPLIT", help="The qrels file to score: qrels/SPLIT.tsv.")
    ] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    limit_queries: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Only the first N queries.")
    ] = None,
    limit_docs: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Only N documents, the relevant ones first."),
    ] = None,
) -> None:
    """Score keyword, vector and hybrid search on a BEIR dataset.

    The dataset is indexed into a fresh collection: in a temporary data directory, or in
    PostgreSQL with SKR_DATABASE_URL.
    """
    from skr.domain.errors import SKRError

    try:
        run = run_eval(
            directory, split=split, limit_queries=limit_queries, limit_docs=limit_docs,
            progress_console=err(),
        )  # fmt: skip
    except SKRError as exc:
        fail(exc.detail)
    print_run(run, out(), as_json=as_json)


@dataclass(frozen=True, slots=True)
class EvalRun:
    """What `skr eval` prints: the dataset, the store, the ingest and the report."""

    dataset: str
    split: str
    store: str
    documents: int
    chunks: int
    ingest_seconds: float
    report: EvalReport

    def as_dict(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "store": self.store,
            "documents": self.documents,
            "chunks": self.chunks,
            "ingest_seconds": self.ingest_seconds,
            **self.report.as_dict(),
        }


def run_eval(
    directory: Path,
    *,
    split: str,
    limit_queries: int | None,
    limit_docs: int | None,
    progress_console: Console,
) -> EvalRun:
    """Load the dataset, index it into a fresh collection (a temporary data directory, or
    PostgreSQL when SKR_DATABASE_URL is set) and score every ranking on its judged queries."""
    from skr.services.evaluation import load_beir
    from skr.wiring.container import build_container

    dataset = load_beir(directory, split).limited(queries=limit_queries, documents=limit_docs)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=progress_console,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="skr-eval-") as data_dir, progress:
        # extractive answers only: the citation rate measures retrieval, not a remote model
        settings = Settings(
            run_workers=False,
            data_dir=Path(data_dir),
            cache=CacheSettings(ttl_seconds=0),
            llm=LLMSettings(base_url=None),
        )

        async def go() -> EvalRun:
            async with build_container(settings) as container:
                return await _index_and_evaluate(container, dataset, split, progress)

        return anyio.run(go)


async def _index_and_evaluate(
    container: Container, dataset: BeirDataset, split: str, progress: Progress
) -> EvalRun:
    from skr.domain.models import DEFAULT_TENANT
    from skr.services.evaluation import (
        DEFAULT_K_VALUES,
        RANKINGS,
        document_id_of,
        evaluate,
        evaluate_citations,
    )

    services = container.services
    name = f"eval-{secrets.token_hex(4)}"
    collection = await services.library.create_collection(name, DEFAULT_TENANT)
    try:
        documents = text_documents(dataset)
        started = time.perf_counter()
        outcomes = await services.ingest.ingest_texts(
            documents,
            collection_id=collection.id,
            on_progress=_bar(progress, "indexing documents", len(documents)),
        )
        ingest_seconds = time.perf_counter() - started
        await container.adapters.backend.store.refresh_statistics()
        document_id = document_id_of(dataset.name)
        report = await evaluate(
            services.search,
            collection,
            dataset.queries,
            dataset.qrels,
            document_id=document_id,
            on_progress=_bar(
                progress, "searching", len(dataset.queries) * len(RANKINGS) * len(DEFAULT_K_VALUES)
            ),
        )
        citations = await evaluate_citations(
            services.ask,
            collection,
            dataset.queries,
            dataset.qrels,
            document_id=document_id,
            on_progress=_bar(progress, "answering", len(dataset.queries)),
        )
    finally:
        if container.settings.database_url is not None:
            await _empty_collection(container, collection)
    return EvalRun(
        dataset=dataset.name,
        split=split,
        store="sqlite" if container.settings.database_url is None else "postgresql",
        documents=len(documents),
        chunks=sum(o.chunks for o in outcomes),
        ingest_seconds=ingest_seconds,
        report=replace(report, citations=citations),
    )


def text_documents(dataset: BeirDataset) -> list[TextDocument]:
    """The corpus as texts: a document with only a title is its title; one with neither
    could never be found, and is left out (the printed document count shows it)."""
    from skr.services.evaluation import source_id
    from skr.services.ingest import TextDocument

    return [
        TextDocument(source_id(dataset.name, d.id), d.title, d.text if d.text.strip() else d.title)
        for d in dataset.corpus
        if d.text.strip() or d.title.strip()
    ]


def _bar(progress: Progress, description: str, total: int) -> Callable[[int], None]:
    task = progress.add_task(description, total=total)
    return lambda done: progress.update(task, completed=done)


async def _empty_collection(container: Container, collection: Collection) -> None:
    """A shared PostgreSQL keeps no evaluation documents (the port deletes no collections,
    so an empty ``eval-…`` collection stays)."""
    while True:
        library = container.services.library
        documents, _ = await library.list_documents(
            collection.name, collection.tenant, limit=_DELETE_PAGE, cursor=None
        )
        if not documents:
            return
        for document in documents:
            await library.delete_document(document.id, collection.tenant)


def print_run(run: EvalRun, console: Console, *, as_json: bool) -> None:
    from skr.services.evaluation import ANSWER_PASSAGES, HEADLINE_METRICS

    if as_json:
        console.print_json(json.dumps(run.as_dict()))
        return
    console.print(
        f"{run.dataset} ({run.split}): {run.report.queries} queries, {run.documents} documents "
        f"({run.chunks} chunks) indexed in {run.ingest_seconds:.1f} s on {run.store}",
        highlight=False,
        soft_wrap=True,
    )
    table = Table("ranking", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for header in (*HEADLINE_METRICS, "total s", "p50 ms", "p95 ms"):
        table.add_column(header, justify="right", min_width=len(header), no_wrap=True)
    for ranking in run.report.rankings:
        table.add_row(
            ranking.mode,
            *(f"{ranking.metrics[name]:.4f}" for name in HEADLINE_METRICS),
            f"{ranking.total_seconds:.1f}",
            f"{ranking.p50_ms:.1f}",
            f"{ranking.p95_ms:.1f}",
        )
    console.print(table)
    if run.report.rankings:
        console.print(
            f"metrics at k from searches for k documents; p50/p95: one search for "
            f"{run.report.rankings[0].latency_k} documents, in process",
            highlight=False,
            soft_wrap=True,
        )
    citations = run.report.citations
    if citations is not None:
        console.print(
            f"answers citing a relevant document: {citations.relevant}/{citations.queries} "
            f"({citations.rate:.1%}; extractive, {ANSWER_PASSAGES} passages; "
            f"p50 {citations.p50_ms:.1f} ms, p95 {citations.p95_ms:.1f} ms)",
            highlight=False,
            soft_wrap=True,
        )
