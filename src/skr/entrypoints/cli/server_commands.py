"""`skr serve`, `skr worker` and `skr migrate`: the commands that run SKR itself, or ready
its store, on this machine."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from skr.entrypoints.cli.output import err, fail, out
from skr.settings import EmbedSettings, Settings

server_app = typer.Typer()


def _configure_logging(settings: Settings) -> None:
    from skr.observability.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)


@server_app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(metavar="ADDRESS", help="Address to listen on (SKR_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(metavar="PORT", help="Port to listen on (SKR_PORT).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(metavar="N", help="API processes (scale-out only; default SKR_API_WORKERS)."),
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
        fail("several API processes need SKR_DATABASE_URL; the embedded store is one process")
    # each uvicorn worker process builds its own app (and container) from the environment
    uvicorn.run(
        "skr.entrypoints.api.app:create_app_from_environment",
        factory=True,
        workers=processes,
        **common,  # type: ignore[arg-type]
    )


@server_app.command()
def worker() -> None:
    """Run job workers only (scale-out: any number, on any machines)."""
    import anyio

    from skr.entrypoints.worker import serve_worker_http
    from skr.runtime.startup_heap import freeze_startup_heap
    from skr.wiring.container import build_container

    # it answers no query
    settings = Settings(run_workers=True, embed=EmbedSettings(query_session=False))
    _configure_logging(settings)
    if settings.database_url is None:
        fail("`skr worker` needs SKR_DATABASE_URL; embedded, `skr serve` runs the workers")

    async def run() -> None:
        async with build_container(settings) as container:
            freeze_startup_heap()
            err().print(f"worker {container.services.worker.owner} running; Ctrl-C stops it")
            await serve_worker_http(container)  # /livez, /readyz, /metrics when a port is set

    anyio.run(run)


@server_app.command()
def migrate() -> None:
    """Create or upgrade the store's schema.

    PostgreSQL with SKR_DATABASE_URL, else SQLite in SKR_DATA_DIR.
    """
    settings = Settings()
    if settings.database_url is None:
        from skr.adapters.sqlite.database import SQLiteDatabase

        database = SQLiteDatabase(settings.sqlite_path)
        database.open()
        database.close()
        out().print(f"schema up to date in {settings.sqlite_path}")
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
        fail(f"could not migrate PostgreSQL: {exc}")
    out().print(f"PostgreSQL schema at version {version}")
