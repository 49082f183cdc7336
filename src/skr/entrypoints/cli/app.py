"""The ``skr`` command line: runs the server, and talks to a running server for the rest."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from skr.entrypoints.cli.job_watch import follow_job_events, poll_job
from skr.entrypoints.cli.keys_commands import keys_app
from skr.settings import EmbedSettings, Settings

app = typer.Typer(
    help="SKR, the Smart Knowledge Repository: turn web sites into a knowledge base.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(keys_app, name="keys")
_out = Console()
_err = Console(stderr=True)

ApiUrl = Annotated[
    str | None,
    typer.Option("--api-url", help="SKR server to talk to (default: SKR_API_URL)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the raw JSON response.")]
CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]


class _Client:
    """A thin HTTP client for the API with errors a person can read."""

    def __init__(self, api_url: str | None) -> None:
        settings = Settings()
        self.base = (api_url or settings.api_url).rstrip("/")
        headers = {}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        self.http = httpx.Client(
            base_url=self.base, timeout=httpx.Timeout(60.0, connect=3.0), headers=headers
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError:
            _fail(f"no SKR server answers at {self.base}; start one with `skr serve`")
        except httpx.TimeoutException:
            _fail(f"the SKR server at {self.base} did not answer in time")
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            _fail(f"{response.status_code}: {detail}")
        return response.json() if response.content else None


def _fail(message: str) -> Any:
    _err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[
        int | None, typer.Option(help="API processes (scale-out only; default SKR_API_WORKERS).")
    ] = None,
) -> None:
    """Run the API server (and, embedded, its background workers)."""
    import uvicorn

    from skr.entrypoints.api.app import create_app
    from skr.observability.logs import logging_config

    settings = Settings()
    _configure_logging(settings)
    processes = workers or settings.api_workers
    listen_host = host or settings.host
    if listen_host != settings.host:  # the app checks where it listens (no keys: loopback)
        settings = settings.model_copy(update={"host": listen_host})
        os.environ["SKR_HOST"] = listen_host  # for the processes that build their own app
    common = {
        "host": listen_host,
        "port": port or settings.port,
        "log_level": settings.log_level,
        "log_config": logging_config(settings.log_format, settings.log_level),
        "timeout_graceful_shutdown": 10,
        # idle connections stay open longer than clients think between requests (and
        # than balancers' idle timeouts): a POST on a connection the server just closed
        # fails, and clients do not retry POSTs
        "timeout_keep_alive": settings.http_keep_alive_seconds,
    }
    if processes == 1:
        uvicorn.run(create_app(settings, freeze_startup_heap_when_ready=True), **common)  # type: ignore[arg-type]
        return
    if settings.database_url is None:
        _fail("several API processes need SKR_DATABASE_URL; the embedded store is one process")
    # each uvicorn worker process builds its own app (and container) from the environment
    uvicorn.run(
        "skr.entrypoints.api.app:create_app_from_environment",
        factory=True,
        workers=processes,
        **common,  # type: ignore[arg-type]
    )


@app.command()
def ingest(
    url: str,
    collection: CollectionOpt = "default",
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the job and show progress.")] = (
        False
    ),
    crawl: Annotated[
        bool, typer.Option("--crawl", help="Crawl the site from URL, not only the page.")
    ] = False,
    max_depth: Annotated[int, typer.Option(help="Crawl: links followed from URL.")] = 3,
    max_pages: Annotated[int, typer.Option(help="Crawl: most URLs in the crawl.")] = 200,
    same_host: Annotated[
        bool,
        typer.Option("--same-host/--subdomains", help="Crawl: URL's host only, or subdomains too."),
    ] = True,
    prefix: Annotated[
        str | None, typer.Option(help="Crawl: only URLs that start with this.")
    ] = None,
    sitemap: Annotated[
        bool, typer.Option("--sitemap/--no-sitemap", help="Crawl: read the site's sitemaps.")
    ] = True,
    api_url: ApiUrl = None,
) -> None:
    """Queue URL for ingestion (a page, a PDF, or with --crawl a whole site)."""
    client = _Client(api_url)
    body: dict[str, Any] = {"url": url, "collection": collection}
    if crawl:
        body["crawl"] = {
            "max_depth": max_depth, "max_pages": max_pages, "same_host": same_host,
            "prefix": prefix, "sitemap": sitemap,
        }  # fmt: skip
    accepted = client.call("POST", "/v1/ingest", json=body)
    job_id = accepted["job_id"]
    _out.print(f"job {job_id} queued for {accepted['url']}")
    if wait:
        _wait_for_job(client, job_id)


def _wait_for_job(client: _Client, job_id: str) -> None:
    """Show the job's progress live (its event stream, or polling if that fails)."""
    with _out.status("waiting…") as status:

        def show(job: dict[str, Any]) -> None:
            c = job["counters"]
            rate = job.get("pages_per_second")
            eta = job.get("eta_seconds")
            status.update(
                f"{job['status']}: discovered {c['discovered']}, fetched {c['fetched']}, "
                f"indexed {c['indexed']}, unchanged {c['unchanged']}, skipped {c['skipped']}, "
                f"failed {c['failed']}"
                + (f", {rate:.1f} pages/s" if rate else "")
                + (
                    f", about {eta:.0f} s left"
                    if eta is not None and job["status"] == "running"
                    else ""
                )
            )

        job = follow_job_events(client.http, job_id, show) or poll_job(
            lambda: client.call("GET", f"/v1/jobs/{job_id}"), show
        )
    c = job["counters"]
    for error in job["errors"]:
        _err.print(f"  {error['url']}: {error['reason']}", highlight=False)
    if job["status"] != "succeeded":
        _fail(f"job {job['status']}: {job.get('reason') or 'see errors above'}")
    _out.print(
        f"job succeeded: indexed {c['indexed']}, unchanged {c['unchanged']}, "
        f"skipped {c['skipped']}, failed {c['failed']}, removed {c['removed']}"
    )


@app.command()
def search(
    query: str,
    collection: CollectionOpt = "default",
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 10,
    kind: Annotated[str, typer.Option(help="text, image or all.")] = "all",
    as_json: JsonFlag = False,
    api_url: ApiUrl = None,
) -> None:
    """Search a collection."""
    params: dict[str, str | int] = {"q": query, "collection": collection, "k": k, "kind": kind}
    result = _Client(api_url).call("GET", "/v1/search", params=params)
    if as_json:
        _out.print_json(json.dumps(result))
        return
    if not result["hits"]:
        _out.print("no results")
    for n, hit in enumerate(result["hits"], start=1):
        _out.print(f"[bold]{n}. {hit['title']}[/] ({hit['score']:.4f})", highlight=False)
        _out.print(f"   {hit['url']}", style="cyan", highlight=False)
        _out.print(f"   {hit['text'][:240].replace(chr(10), ' ')}", highlight=False)


@app.command()
def ask(
    question: str,
    collection: CollectionOpt = "default",
    as_json: JsonFlag = False,
    api_url: ApiUrl = None,
) -> None:
    """Ask a question; the answer cites its sources."""
    body = {"question": question, "collection": collection}
    result = _Client(api_url).call("POST", "/v1/ask", json=body)
    if as_json:
        _out.print_json(json.dumps(result))
        return
    if result["degraded"]:
        _err.print("(the answer model failed; this is the extractive answer)")
    _out.print(result["answer"], highlight=False)
    for citation in result["citations"]:
        _out.print(f"[{citation['n']}] {citation['title']} — {citation['url']}", highlight=False)


@app.command()
def jobs(
    limit: Annotated[int, typer.Option(help="How many jobs.")] = 20,
    as_json: JsonFlag = False,
    api_url: ApiUrl = None,
) -> None:
    """Recent jobs, newest first."""
    result = _Client(api_url).call("GET", "/v1/jobs", params={"limit": limit})
    if as_json:
        _out.print_json(json.dumps(result))
        return
    table = Table("id", "status", "url", "indexed", "unchanged", "failed", "reason")
    for job in result["jobs"]:
        c = job["counters"]
        table.add_row(
            job["id"][:12], job["status"], job["url"], str(c["indexed"]),
            str(c["unchanged"]), str(c["failed"]), job.get("reason") or "",
        )  # fmt: skip
    _out.print(table)


@app.command("eval")
def eval_(
    directory: Annotated[
        Path, typer.Argument(file_okay=False, help="corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv.")
    ],
    split: Annotated[str, typer.Option(help="The qrels file to score: qrels/SPLIT.tsv.")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    limit_queries: Annotated[int | None, typer.Option(min=1, help="Only the first N.")] = None,
    limit_docs: Annotated[
        int | None, typer.Option(min=1, help="Only N documents, the relevant ones first.")
    ] = None,
) -> None:
    """Score keyword, vector and hybrid search on a BEIR-layout dataset, indexed into a fresh
    collection (a temporary data directory, or PostgreSQL with SKR_DATABASE_URL)."""
    from skr.domain.errors import SKRError
    from skr.entrypoints.cli.eval_commands import print_run, run_eval

    try:
        run = run_eval(
            directory, split=split, limit_queries=limit_queries, limit_docs=limit_docs,
            progress_console=_err,
        )  # fmt: skip
    except SKRError as exc:
        _fail(exc.detail)
    print_run(run, _out, as_json=as_json)


def _configure_logging(settings: Settings) -> None:
    from skr.observability.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)


@app.command()
def worker() -> None:
    """Run job workers only (scale-out: any number of these, on any machines)."""
    import anyio

    from skr.entrypoints.worker import serve_worker_http
    from skr.runtime.startup_heap import freeze_startup_heap
    from skr.wiring.container import build_container

    # it answers no query
    settings = Settings(run_workers=True, embed=EmbedSettings(query_session=False))
    _configure_logging(settings)
    if settings.database_url is None:
        _fail("`skr worker` needs SKR_DATABASE_URL; embedded, `skr serve` runs the workers")

    async def run() -> None:
        async with build_container(settings) as container:
            freeze_startup_heap()
            _err.print(f"worker {container.services.worker.owner} running; Ctrl-C stops it")
            await serve_worker_http(container)  # /livez, /readyz, /metrics when a port is set

    anyio.run(run)


@app.command()
def migrate() -> None:
    """Create or upgrade the store's schema (PostgreSQL with SKR_DATABASE_URL, else SQLite)."""
    settings = Settings()
    if settings.database_url is None:
        from skr.adapters.sqlite.database import SQLiteDatabase

        database = SQLiteDatabase(settings.sqlite_path)
        database.open()
        database.close()
        _out.print(f"schema up to date in {settings.sqlite_path}")
        return
    import anyio
    import psycopg

    from skr.adapters.postgres.migrations import migrate as migrate_postgres

    async def run(url: str) -> int:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await migrate_postgres(conn)

    try:
        version = anyio.run(run, settings.database_url)
    except psycopg.Error as exc:
        _fail(f"could not migrate PostgreSQL: {exc}")
    _out.print(f"PostgreSQL schema at version {version}")


@app.command("export")
def export_(
    file: Annotated[
        Path,
        typer.Argument(
            dir_okay=False, help="File to write; gzip-compressed when its name ends in .gz."
        ),
    ],
) -> None:
    """Write the whole knowledge base to FILE, vectors included: every tenant's collections
    and documents, from PostgreSQL with SKR_DATABASE_URL, else from SQLite in SKR_DATA_DIR.
    Nothing is embedded again; FILE appears only once it is complete."""
    settings = Settings()
    if settings.database_url is None and not settings.sqlite_path.is_file():
        _fail(f"there is no knowledge base in {settings.data_dir} to export")
    _transfer(settings, file, exporting=True)


@app.command("import")
def import_(
    file: Annotated[
        Path, typer.Argument(dir_okay=False, help="A file written by `skr export` (.gz or not).")
    ],
) -> None:
    """Read FILE, written by `skr export`, into the store the settings select (PostgreSQL
    with SKR_DATABASE_URL, else SQLite in SKR_DATA_DIR), vectors as they are: nothing is
    embedded again. A document whose URL its collection already holds is REPLACED by the
    file's version. The whole file is checked first; a file of another embedding model is
    refused."""
    _transfer(Settings(), file, exporting=False)


def _transfer(settings: Settings, file: Path, *, exporting: bool) -> None:
    """Run an export or an import with a progress bar and a summary; errors end it readably."""
    import anyio
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from skr.adapters.onnx_embedder import DIMENSIONS, MODEL_ID
    from skr.domain.errors import SKRError
    from skr.services.transfer import TransferCounts, export_knowledge_base, import_knowledge_base
    from skr.wiring.stores import open_store

    run = export_knowledge_base if exporting else import_knowledge_base
    verb = "exported" if exporting else "imported"
    progress = Progress(
        TextColumn(f"{verb[:-2]}ing documents"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=_err,
    )  # fmt: skip
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
        _fail(f"{exc.detail}{after}")
    where = f"to {file}" if exporting else f"from {file}"
    _out.print(
        f"{verb} {_count(counts.documents, 'document')} ({_count(counts.chunks, 'chunk')}) "
        f"in {_count(counts.collections, 'collection')} {where}",
        highlight=False,
    )
    _warn_skipped(counts.skipped)


def _warn_skipped(skipped: int) -> None:
    if skipped:
        _err.print(
            f"warning: left out {_count(skipped, 'document')} whose vectors come from "
            "another model; reindex them, then export again",
            highlight=False,
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def main() -> None:
    try:
        app()
    except ValidationError as exc:
        problems = "; ".join(
            f"SKR_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        _err.print(f"[bold red]error:[/] invalid setting: {problems}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
