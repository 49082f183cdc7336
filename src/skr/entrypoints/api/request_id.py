"""Pure ASGI middleware: every request gets an id, for its log lines and its response."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skr.observability.logs import (
    REQUEST_ID_HEADER,
    bound_request_id,
    new_request_id,
    safe_request_id,
)

_HEADER = REQUEST_ID_HEADER.lower().encode("latin-1")


class RequestIdMiddleware:
    """Takes the caller's ``X-Request-ID`` when it is short and safe (a proxy's or a
    client's, so one id spans their logs and ours), else makes one; binds it for the
    request's log lines and answers it in the response's ``X-Request-ID``."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        offered = next((v for k, v in scope.get("headers", []) if k == _HEADER), b"")
        request_id = safe_request_id(offered.decode("latin-1")) or new_request_id()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        with bound_request_id(request_id):
            await self._app(scope, receive, send_with_id)
