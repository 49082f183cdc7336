"""`skr worker`'s own small HTTP server, for probes and Prometheus: /livez, /readyz, /metrics.

A worker's counters (pages ingested, embedder calls) live in its own process, so Prometheus
must scrape each worker; without ``SKR_WORKER_HTTP_PORT`` a worker serves nothing."""

from __future__ import annotations

import anyio
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from skr.wiring.container import Container


def worker_app(container: Container) -> FastAPI:
    app = FastAPI(title="SKR worker", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        """Constant time; touches nothing."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """The same cached dependency check as the API's: a worker without its store
        cannot lease jobs."""
        report = await container.services.readiness.report()
        status = "unready" if not report.ready else "degraded" if report.degraded else "ready"
        body = {"status": status, "checks": report.checks}
        return JSONResponse(body, status_code=200 if report.ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        await container.services.gauges.refresh()
        return Response(container.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


async def serve_worker_http(container: Container) -> None:
    """Serve until cancelled (or, with no port set, only wait)."""
    settings = container.settings
    if settings.worker.http_port is None:
        await anyio.sleep_forever()
        return
    config = uvicorn.Config(
        worker_app(container),
        host=settings.host,
        port=settings.worker.http_port,
        log_config=None,  # the CLI configured logging already
        access_log=False,  # probes and scrapes every few seconds are not news
        lifespan="off",
    )
    await uvicorn.Server(config).serve()
