"""Log lines as JSON (for collectors) or text (for people), each carrying the id of the
request it serves; a job's lines carry the id of the request that queued it."""

from __future__ import annotations

import logging
import logging.config
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["json", "text"]

REQUEST_ID_HEADER = "X-Request-ID"
# What a caller may send as a request id: short, and nothing a log reader could misread
# (no spaces, quotes, newlines or control characters).
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

_request_id: ContextVar[str | None] = ContextVar("skr_request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# JSON keys: time, level, logger, message, request_id, plus any `extra=` a call passes.
JSON_FIELDS = ("asctime", "levelname", "name", "message", "request_id")
_JSON_RENAMES = {"asctime": "time", "levelname": "level", "name": "logger"}


def current_request_id() -> str | None:
    return _request_id.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


def safe_request_id(value: object) -> str | None:
    """``value`` when it is an acceptable request id, else None."""
    if isinstance(value, str) and _SAFE_REQUEST_ID.fullmatch(value):
        return value
    return None


@contextmanager
def bound_request_id(value: object) -> Iterator[str | None]:
    """Log lines inside the block (and in tasks it starts) carry ``value`` as their
    request id; an unacceptable value is dropped rather than logged."""
    request_id = safe_request_id(value)
    token = _request_id.set(request_id)
    try:
        yield request_id
    finally:
        _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (``-`` outside any request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get() or "-"
        return True


class SkrJsonFormatter(JsonFormatter):
    """One JSON object per line; times in UTC, ISO 8601 with milliseconds."""

    def __init__(self) -> None:
        super().__init__(
            list(JSON_FIELDS),
            rename_fields=dict(_JSON_RENAMES),
            # uvicorn's copy of its message with terminal colour codes
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        if log_data.get("request_id") == "-":
            log_data["request_id"] = None


def logging_config(log_format: LogFormat, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the root logger and uvicorn's loggers; uvicorn
    takes it as ``log_config`` and applies it in each of its worker processes too."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.SkrJsonFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "skr",
        "filters": ["request_id"],
        "stream": "ext://sys.stderr",
    }
    # trafilatura reports every short page it discards; pypdf warns once per damaged
    # object, so one hostile PDF can flood the log (SKR logs the reason a PDF failed itself)
    quiet = {"level": "ERROR"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"skr": formatter},
        "handlers": {"skr": handler},
        "root": {"handlers": ["skr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
            "trafilatura": quiet,
            "pypdf": quiet,
        },
    }


def configure_logging(log_format: LogFormat, level: str) -> None:
    logging.config.dictConfig(logging_config(log_format, level))
