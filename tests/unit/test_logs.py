"""Structured logs: JSON lines that parse, a request id on every line of a request, and the
same id on the lines of the jobs that request queued."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from skr.entrypoints.api.app import create_app
from skr.observability.logs import (
    RequestIdFilter,
    SkrJsonFormatter,
    bound_request_id,
    current_request_id,
    safe_request_id,
)
from skr.settings import Settings
from tests.fakes.fake_container import fake_container_factory

EMPTY_PAGE = "http://docs.test/empty"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Everything logged through the root logger, as SKR's JSON formatter writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SkrJsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def parsed(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_parse_and_carry_the_request_id(json_lines: io.StringIO) -> None:
    log = logging.getLogger("skr.test")
    log.info("outside any request")
    with bound_request_id("abc-123") as bound:
        assert bound == current_request_id() == "abc-123"
        log.warning("inside %s", "a request", extra={"job_id": "j1"})
    assert current_request_id() is None
    outside, inside = parsed(json_lines)
    assert outside["request_id"] is None and outside["message"] == "outside any request"
    assert inside["request_id"] == "abc-123"
    assert inside["message"] == "inside a request" and inside["job_id"] == "j1"
    assert inside["level"] == "WARNING" and inside["logger"] == "skr.test"
    assert re.fullmatch(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", str(inside["time"]))


@pytest.mark.parametrize(
    ("offered", "accepted"),
    [
        ("req-1.2_3:x", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("has space", False),
        ("line\nbreak", False),
        ('quote"d', False),
        ("-leading-dash", False),
        ("", False),
    ],
)
def test_only_short_safe_request_ids_are_taken(offered: str, accepted: bool) -> None:
    assert (safe_request_id(offered) == offered) is accepted
    assert safe_request_id(12) is None


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    factory = fake_container_factory({EMPTY_PAGE: "<html><body></body></html>"})
    with TestClient(create_app(Settings(data_dir=tmp_path), factory)) as test_client:
        yield test_client


def test_every_response_carries_a_request_id(client: TestClient) -> None:
    given = client.get("/livez", headers={"X-Request-ID": "from-the-proxy"})
    assert given.headers["x-request-id"] == "from-the-proxy"
    made = client.get("/livez").headers["x-request-id"]
    assert len(made) == 32 and made != client.get("/livez").headers["x-request-id"]
    unsafe = client.get("/v1/jobs/nope", headers={"X-Request-ID": "bad id\tx"})
    assert unsafe.status_code == 404  # a problem response has one too
    assert unsafe.headers["x-request-id"] != "bad id\tx"
    assert len(unsafe.headers["x-request-id"]) == 32


def test_a_jobs_log_lines_carry_the_id_of_the_request_that_queued_it(
    client: TestClient, json_lines: io.StringIO
) -> None:
    accepted = client.post(
        "/v1/ingest", json={"url": EMPTY_PAGE}, headers={"X-Request-ID": "ingest-42"}
    )
    job_id = accepted.json()["job_id"]
    deadline = time.monotonic() + 5
    while client.get(f"/v1/jobs/{job_id}").json()["status"] != "failed":
        assert time.monotonic() < deadline, "the job did not fail"
        time.sleep(0.02)
    lines = [
        line
        for line in parsed(json_lines)
        if line["logger"] == "skr.services.jobs.worker" and job_id in str(line["message"])
    ]
    assert [str(line["message"]).split(":")[0] for line in lines] == [
        f"job {job_id} started",
        f"job {job_id} failed",
    ]
    assert {line["request_id"] for line in lines} == {"ingest-42"}


def test_skr_logging_config_makes_every_logger_write_json(tmp_path: Path) -> None:
    """The configuration the CLI and uvicorn's worker processes apply: the root logger
    and uvicorn's own loggers all write one JSON object a line."""
    script = (
        "import logging\n"
        "from skr.observability.logs import bound_request_id, configure_logging\n"
        "configure_logging('json', 'info')\n"
        "with bound_request_id('r-1'):\n"
        "    logging.getLogger('uvicorn.access').info('%s %s', 'GET', '/livez')\n"
        "logging.getLogger('uvicorn.error').info('started', extra={'color_message': 'x'})\n"
        "logging.getLogger('skr.x').debug('hidden at info')\n"
        "logging.getLogger('trafilatura').warning('hidden below error')\n"
        "logging.getLogger('pypdf._reader').warning('hidden below error')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert all("color_message" not in line for line in lines)
    assert [(x["logger"], x["message"], x["request_id"]) for x in lines] == [
        ("uvicorn.access", "GET /livez", "r-1"),
        ("uvicorn.error", "started", None),
    ]
