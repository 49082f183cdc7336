"""Routes for load balancers and monitoring: /livez, /readyz, /metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from skr.domain.errors import SKRError
from skr.entrypoints.api.dependencies import ContainerDep

router = APIRouter(tags=["health"])


@router.get("/livez")
async def livez() -> dict[str, str]:
    """Constant time; touches nothing."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(container: ContainerDep) -> JSONResponse:
    """Dependency state from a check cached for a few seconds."""
    report = await container.readiness.report()
    status = "unready" if not report.ready else "degraded" if report.degraded else "ready"
    body = {"status": status, "checks": report.checks}
    return JSONResponse(body, status_code=200 if report.ready else 503)


@router.get("/metrics")
async def metrics(container: ContainerDep) -> Response:
    """Prometheus text format."""
    try:
        container.metrics.job_queue_depth.set(await container.job_queue.depth())
    except SKRError:
        container.metrics.job_queue_depth.set(float("nan"))
    report = await container.readiness.report()
    for name, state in report.checks.items():
        container.metrics.dependency_up.labels(name).set(1 if state == "ok" else 0)
    if container.pool_stats is not None:
        for name, value in container.pool_stats().items():
            container.metrics.db_pool.labels(name).set(value)
    return Response(container.metrics.render(), media_type=CONTENT_TYPE_LATEST)
