"""Routes for load balancers and monitoring: /livez, /readyz, /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from skr.entrypoints.api.dependencies import GaugesDep, MetricsDep, ReadinessDep
from skr.entrypoints.api.schemas import ReadinessRead

router = APIRouter(tags=["health"])


@router.get("/livez")
async def livez() -> dict[str, str]:
    """Constant time; touches nothing."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadinessRead,
    responses={503: {"model": ReadinessRead, "description": "Not ready: see checks"}},
)
async def readyz(readiness: ReadinessDep, request: Request) -> JSONResponse:
    """Dependency state from a check cached for a few seconds; unready too while this
    process is shedding hard, so a balancer sends its work elsewhere."""
    report = await readiness.report()
    checks = dict(report.checks)
    shedding = request.app.state.admission.shedding_hard()
    checks["admission"] = f"shedding {', '.join(shedding)} requests" if shedding else "ok"
    ready = report.ready and not shedding
    status = "unready" if not ready else "degraded" if report.degraded else "ready"
    return JSONResponse({"status": status, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(gauges: GaugesDep, registry: MetricsDep, request: Request) -> Response:
    """Prometheus text format."""
    await gauges.refresh()
    for name, gate in request.app.state.admission.gates.items():
        registry.admission.labels(name, "running").set(gate.running)
        registry.admission.labels(name, "waiting").set(gate.waiting)
        registry.admission.labels(name, "limit").set(gate.limit)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
