"""Errors become application/problem+json here, and only here."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from skr.domain.errors import (
    AuthenticationError,
    ConflictError,
    DependencyError,
    FetchError,
    InvalidInputError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitedError,
    SKRError,
)
from skr.entrypoints.api.schemas import PROBLEM_JSON, ProblemRead

logger = logging.getLogger(__name__)

_STATUS_BY_ERROR: list[tuple[type[SKRError], int]] = [
    (InvalidInputError, 422),
    (NotFoundError, 404),
    (ConflictError, 409),
    (OverloadedError, 503),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (RateLimitedError, 429),
    (DependencyError, 503),
    (FetchError, 422),
]


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    title = HTTPStatus(status).phrase
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _status_of(exc: SKRError) -> int:
    for kind, status in _STATUS_BY_ERROR:
        if isinstance(exc, kind):
            return status
    return 500


async def _skr_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SKRError)
    status = _status_of(exc)
    headers = None
    if isinstance(exc, OverloadedError | RateLimitedError):
        headers = {"Retry-After": str(exc.retry_after_seconds)}
    elif isinstance(exc, AuthenticationError):
        headers = {"WWW-Authenticate": 'Bearer realm="skr"'}
    elif isinstance(exc, DependencyError):
        headers = {"Retry-After": "5"}
    return problem(status, exc.detail, headers)


def _describe(error: dict[str, object]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")  # type: ignore[attr-defined]
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    return f"{location}: {message}" if location else message


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [_describe(e) for e in exc.errors()[:5]]
    return problem(422, "; ".join(details) or "the request is not valid")


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem(exc.status_code, detail, dict(exc.headers or {}))


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error", exc_info=exc)
    return problem(500, "SKR hit an internal error; it has been logged")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SKRError, _skr_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    _declare_problem_schema(app)


def _declare_problem_schema(app: FastAPI) -> None:
    """Puts ``ProblemRead`` into the OpenAPI components, where the routes' error
    declarations (``schemas.problem_responses``) point: FastAPI only adds the models it
    serialises itself, and it would declare them as application/json."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()  # cached by FastAPI as app.openapi_schema
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas["ProblemRead"] = ProblemRead.model_json_schema()
        return document

    app.openapi = openapi  # type: ignore[method-assign]
