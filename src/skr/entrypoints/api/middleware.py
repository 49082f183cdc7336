"""Pure ASGI middleware: request metrics, and a cap on request body size."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skr.entrypoints.api.problems import problem
from skr.observability.metrics import Metrics


class RequestMetricsMiddleware:
    """Counts requests and times them, labelled by route template (never by raw path)."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], Metrics | None]) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, send_wrapper)
        finally:
            metrics = self._metrics()
            if metrics is not None:
                route = scope.get("route")
                template = getattr(route, "path", "unmatched")
                method = scope.get("method", "GET")
                metrics.http_requests.labels(method, template, str(status)).inc()
                metrics.http_latency.labels(method, template).observe(time.perf_counter() - started)


class BodySizeLimitMiddleware:
    """Answers 413 for a body over ``max_bytes``, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > self._max_bytes):
                await self._too_big()(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max_bytes:
                    raise _BodyTooLargeError
            return message

        try:
            await self._app(scope, limited_receive, send)
        except _BodyTooLargeError:
            await self._too_big()(scope, receive, send)

    def _too_big(self) -> ASGIApp:
        """The 413 answer, made only when it is sent: every request used to pay for making
        it, a real share of the cost of a request that does nothing (docs/benchmarks.md,
        "What one request costs (runs Z9–Z14)"; docs/benchmarks/history.md, "Figures that
        were in code comments")."""
        return problem(413, f"the request body is larger than {self._max_bytes} bytes")


class _BodyTooLargeError(Exception):
    pass
