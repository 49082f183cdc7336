"""The FastAPI application factory; its lifespan enters the one container."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from skr.domain.errors import SKRError
from skr.entrypoints.api import routes_health, routes_jobs, routes_library, routes_search
from skr.entrypoints.api.admission import Admission, AdmissionMiddleware
from skr.entrypoints.api.dependencies import is_loopback
from skr.entrypoints.api.middleware import BodySizeLimitMiddleware, RequestMetricsMiddleware
from skr.entrypoints.api.problems import install_problem_handlers
from skr.entrypoints.api.request_id import RequestIdMiddleware
from skr.entrypoints.web.routes import STATIC_PATH, static_files, web_router
from skr.entrypoints.web.signin import install_sign_in_redirect
from skr.observability.metrics import Metrics
from skr.runtime.startup_heap import freeze_startup_heap
from skr.settings import Settings
from skr.wiring.container import Container, build_container

logger = logging.getLogger(__name__)


ContainerFactory = Callable[[Settings], AbstractAsyncContextManager[Container]]


def create_app(
    settings: Settings | None = None,
    container_factory: ContainerFactory = build_container,
    *,
    freeze_startup_heap_when_ready: bool = False,
) -> FastAPI:
    """Build the app; nothing is connected or loaded until the lifespan starts.
    Tests pass a ``container_factory`` that wires fakes instead of adapters. A served
    process asks to freeze its startup heap once ready (``startup_heap``)."""
    resolved = settings if settings is not None else Settings()

    lifespan = _lifespan(resolved, container_factory, freeze_startup_heap_when_ready)

    app = FastAPI(
        title="SKR — Smart Knowledge Repository",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.container = None
    admission = Admission.from_settings(resolved)
    app.state.admission = admission
    install_problem_handlers(app)
    for module in (routes_health, routes_jobs, routes_search, routes_library):
        app.include_router(module.router)
    app.include_router(web_router())
    install_sign_in_redirect(app)
    app.mount(STATIC_PATH, static_files(), name="static")

    def current_metrics() -> Metrics | None:
        container = app.state.container
        return None if container is None else container.metrics

    def count_shed(gate: str) -> None:
        metrics = current_metrics()
        if metrics is not None:
            metrics.http_shed.labels(gate).inc()

    # outermost last: metrics see every request, shed ones included
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=resolved.max_request_bytes)
    admission.on_shed = count_shed
    app.add_middleware(AdmissionMiddleware, admission=admission)
    app.add_middleware(RequestMetricsMiddleware, metrics=current_metrics)
    app.add_middleware(RequestIdMiddleware)  # outermost: even a shed request has an id
    return app


def _lifespan(
    settings: Settings, container_factory: ContainerFactory, freeze_heap: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: enter the container, refuse to serve beyond loopback without
    API keys, and say how SKR runs."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with container_factory(settings) as container:
            app.state.container = container
            try:
                open_mode = await container.services.access.open_mode()
            except SKRError as exc:  # the store is not up yet: serve unready, decide later
                logger.warning("could not tell whether API keys exist yet: %s", exc.detail)
                open_mode = False
            if open_mode:
                _check_open_mode_host(settings.host)
            if not settings.allow_private_networks:
                logger.info("the network guard refuses private and loopback addresses")
            if freeze_heap:
                freeze_startup_heap()
            logger.info("SKR ready; data in %s", settings.data_dir)
            yield
            app.state.container = None

    return lifespan


def _check_open_mode_host(host: str) -> None:
    if not is_loopback(host):
        raise RuntimeError(
            f"SKR has no API key, so it serves only on loopback, not on {host}: create one "
            "with `skr keys create`, or set SKR_HOST=127.0.0.1"
        )
    logger.warning(
        "no API key exists: SKR is open to anyone on this machine "
        "(serving on %s only); `skr keys create` to require keys",
        host,
    )


def create_app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` (settings from the environment): a served process."""
    return create_app(freeze_startup_heap_when_ready=True)
