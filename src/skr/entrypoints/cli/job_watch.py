"""Following a job from the command line: the server's event stream, polling when that fails."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
# Longer than the server's 15 s keep-alive: a silent stream is a dead one. As a plain
# (connect, read, write, pool) tuple, which any httpx-compatible client takes (Starlette's
# TestClient is built on a fork of httpx whose Timeout class is another type).
_STREAM_TIMEOUT = (3.0, 30.0, 30.0, 30.0)

JobJson = dict[str, Any]


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """``(event, data)`` for each event of a text/event-stream, given its lines; comments
    and fields other than ``event`` and ``data`` are skipped."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)


def follow_job_events(
    http: httpx.Client, job_id: str, on_job: Callable[[JobJson], None]
) -> JobJson | None:
    """Follow ``GET /v1/jobs/{id}/events``, calling ``on_job`` for each update, until the
    job is in a final status; that job is returned. None when the stream cannot be had or
    ends early (an older server, a proxy, a dropped connection): the caller then polls."""
    try:
        with http.stream(
            "GET",
            f"/v1/jobs/{job_id}/events",
            headers={"accept": "text/event-stream"},
            timeout=_STREAM_TIMEOUT,
        ) as response:
            if response.status_code != 200:
                return None
            for event, data in sse_events(response.iter_lines()):
                if event != "job":
                    continue
                job: JobJson = json.loads(data)
                on_job(job)
                if job["status"] in FINAL_STATUSES:
                    return job
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    return None


def poll_job(
    get_job: Callable[[], JobJson], on_job: Callable[[JobJson], None], interval: float = 0.5
) -> JobJson:
    """Read the job every ``interval`` seconds until it is in a final status."""
    while True:
        job = get_job()
        on_job(job)
        if job["status"] in FINAL_STATUSES:
            return job
        time.sleep(interval)
