"""`skr export` and `skr import`: the whole knowledge base to a file and back, vectors
included, straight on the store the settings select."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from skr.entrypoints.cli.output import err, fail, out
from skr.settings import Settings

if TYPE_CHECKING:
    from rich.progress import Progress

    from skr.services.transfer import TransferCounts

transfer_app = typer.Typer()


@transfer_app.command("export")
def export_(
    file: Annotated[
        Path,
        typer.Argument(
            dir_okay=False,
            metavar="FILE",
            help="File to write; gzip-compressed when its name ends in .gz.",
        ),
    ],
) -> None:
    """Write the whole knowledge base to FILE, vectors included.

    Every tenant's collections and documents, from PostgreSQL with SKR_DATABASE_URL, else
    from SQLite in SKR_DATA_DIR. Nothing is embedded again; FILE appears only once it is
    complete.
    """
    settings = Settings()
    if settings.database_url is None and not settings.sqlite_path.is_file():
        fail(f"there is no knowledge base in {settings.data_dir} to export")
    _transfer(settings, file, exporting=True)


@transfer_app.command("import")
def import_(
    file: Annotated[
        Path,
        typer.Argument(
            dir_okay=False, metavar="FILE", help="A file written by `skr export` (.gz or not)."
        ),
    ],
) -> None:
    """Read FILE, written by `skr export`, into the store.

    The store is the one the settings select: PostgreSQL with SKR_DATABASE_URL, else SQLite
    in SKR_DATA_DIR. Vectors are taken as they are: nothing is embedded again. A document
    whose URL its collection already holds is REPLACED by the file's version. The whole
    file is checked first; a file of another embedding model is refused.
    """
    _transfer(Settings(), file, exporting=False)


def _transfer(settings: Settings, file: Path, *, exporting: bool) -> None:
    """Run an export or an import with a progress bar and a summary; errors end it readably."""
    import anyio

    from skr.adapters.onnx_embedder import DIMENSIONS, MODEL_ID
    from skr.domain.errors import SKRError
    from skr.services.transfer import export_knowledge_base, import_knowledge_base
    from skr.wiring.stores import open_store

    run = export_knowledge_base if exporting else import_knowledge_base
    verb = "exported" if exporting else "imported"
    progress = _progress_bar(f"{verb[:-2]}ing documents")
    task = progress.add_task("documents", total=None)
    done = 0

    def report(count: int, total: int | None) -> None:
        nonlocal done
        done = count
        progress.update(task, completed=count, total=total)

    async def go() -> TransferCounts:
        async with open_store(settings, model_id=MODEL_ID, dimensions=DIMENSIONS) as store:
            return await run(
                store, file, model_id=MODEL_ID, dimensions=DIMENSIONS, on_progress=report
            )

    try:
        with progress:
            counts = anyio.run(go)
    except SKRError as exc:
        after = (
            f"; {done} documents were imported before it (importing again replaces them)"
            if done and not exporting
            else ""
        )
        fail(f"{exc.detail}{after}")
    _print_summary(counts, verb, f"to {file}" if exporting else f"from {file}")


def _progress_bar(description: str) -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err(),
    )  # fmt: skip


def _print_summary(counts: TransferCounts, verb: str, where: str) -> None:
    out().print(
        f"{verb} {_count(counts.documents, 'document')} ({_count(counts.chunks, 'chunk')}) "
        f"in {_count(counts.collections, 'collection')} {where}",
        highlight=False,
    )
    if counts.skipped:
        err().print(
            f"warning: left out {_count(counts.skipped, 'document')} whose vectors come from "
            "another model; reindex them, then export again",
            highlight=False,
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
