"""Routes for load balancers and monitoring: /livez, /readyz, /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from skr.adapters.openai_generator import OpenAIGenerator
from skr.domain.errors import SKRError
from skr.entrypoints.api.dependencies import ContainerDep
from skr.entrypoints.api.schemas import ReadinessRead
from skr.wiring.container import Container

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
async def readyz(container: ContainerDep, request: Request) -> JSONResponse:
    """Dependency state from a check cached for a few seconds; unready too while this
    process is shedding hard, so a balancer sends its work elsewhere."""
    report = await container.readiness.report()
    checks = dict(report.checks)
    shedding = request.app.state.admission.shedding_hard()
    checks["admission"] = f"shedding {', '.join(shedding)} requests" if shedding else "ok"
    ready = report.ready and not shedding
    status = "unready" if not ready else "degraded" if report.degraded else "ready"
    return JSONResponse({"status": status, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(container: ContainerDep, request: Request) -> Response:
    """Prometheus text format."""
    await refresh_gauges(container)
    for name, gate in request.app.state.admission.gates.items():
        container.metrics.admission.labels(name, "running").set(gate.running)
        container.metrics.admission.labels(name, "waiting").set(gate.waiting)
        container.metrics.admission.labels(name, "limit").set(gate.limit)
    return Response(container.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def refresh_gauges(container: Container) -> None:
    """Set the gauges that are read at scrape time (every SKR process that serves
    /metrics calls this): the queue, dependencies, the pool and the LLM breaker."""
    gauges = container.metrics
    try:
        gauges.job_queue_depth.set(await container.job_queue.depth())
        gauges.job_queue_oldest_age.set(await container.job_queue.oldest_queued_age_seconds())
    except SKRError:
        gauges.job_queue_depth.set(float("nan"))
        gauges.job_queue_oldest_age.set(float("nan"))
    report = await container.readiness.report()
    for name, state in report.checks.items():
        gauges.dependency_up.labels(name).set(1 if state == "ok" else 0)
    if container.pool_stats is not None:
        gauges.set_pool_stats(container.pool_stats())
    if isinstance(container.generator, OpenAIGenerator):
        gauges.set_llm_breaker_state(container.generator.breaker_state)
