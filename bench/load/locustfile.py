"""Locust user scenarios for SKR (issue 6): readers, askers and a few ingesters, with think
time. Run by bench/load/run_load.py as its own headless process; never imported by SKR or
its tests.

A 503 that carries ``Retry-After`` is deliberate shedding: it counts as a success under
the name ``shed <endpoint>`` so the error rate excludes it while the report still shows
how much was shed, and the endpoint's own percentiles are those of admitted requests.
"""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path
from typing import Any

import locust.stats
from locust import FastHttpUser, between, events, task
from locust.contrib.fasthttp import ResponseContextManager
from scenario import (
    DEGRADED,
    INGEST_PAGES,
    POPULAR_QUERIES,
    POPULAR_QUESTIONS,
    SHED,
    TAIL_ASPECTS,
    TAIL_TOPICS,
)

# Locust's per-second history (--csv-full-history) reports percentiles over a sliding
# window, 10 s by default; 2 s lets the recovery after a spike be read to the second.
locust.stats.CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW = 2

TERMINAL = {"succeeded", "failed", "cancelled"}
JOB_TIMEOUT_SECONDS = 300.0


def zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


QUERY_WEIGHTS = zipf_weights(len(POPULAR_QUERIES))
QUESTION_WEIGHTS = zipf_weights(len(POPULAR_QUESTIONS))
_serial = itertools.count()


def long_tail_query(rng: random.Random) -> str:
    # a serial number keeps it unique, as a real long tail is (no cache hit)
    return f"{rng.choice(TAIL_TOPICS)} {rng.choice(TAIL_ASPECTS)} {next(_serial)}"


def judge(resp: ResponseContextManager, name: str, expected: int = 200) -> None:
    """Success, deliberate shedding (503 with Retry-After) or failure."""
    if resp.status_code == 503 and resp.headers.get("Retry-After"):
        resp.request_meta["name"] = SHED + name
        resp.success()
    elif resp.status_code == expected:
        resp.success()
    elif resp.status_code == 0:
        resp.failure(f"no response: {resp.error!r}"[:200])
    else:
        resp.failure(f"HTTP {resp.status_code}")


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--site-url", default="", help="base URL of the served Flask docs")
    parser.add_argument("--ingesters", type=int, default=3, help="ingesting users (fixed)")
    parser.add_argument("--request-log", default="", help="CSV of every request, for windows")
    parser.add_argument("--spike-base-users", type=int, default=0)
    parser.add_argument("--spike-factor", type=int, default=10)
    parser.add_argument("--spike-seconds", type=float, default=60.0)
    parser.add_argument("--spike-before", type=float, default=60.0)
    parser.add_argument("--spike-after", type=float, default=90.0)
    parser.add_argument("--spike-spawn-rate", type=float, default=100.0)


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    IngesterUser.fixed_count = max(0, options.ingesters)
    if options.request_log:
        log = Path(options.request_log).open("w", buffering=1 << 16)  # noqa: SIM115 (closed at quit)
        log.write("time,type,name,ms,failed\n")

        def record(request_type: str, name: str, response_time: float, **kw: Any) -> None:
            failed = 0 if kw.get("exception") is None else 1
            log.write(f"{time.time():.3f},{request_type},{name},{response_time:.1f},{failed}\n")

        environment.events.request.add_listener(record)
        environment.events.quitting.add_listener(lambda **_: log.close())


class SkrUser(FastHttpUser):
    """What every SKR user does; subclasses choose the mix."""

    abstract = True
    wait_time = between(1, 5)
    network_timeout = 60.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.rng = random.Random()

    def search(self) -> None:
        if self.rng.random() < 0.2:
            q = long_tail_query(self.rng)
        else:
            q = self.rng.choices(POPULAR_QUERIES, QUERY_WEIGHTS)[0]
        with self.client.get(
            "/v1/search", params={"q": q, "k": 10}, name="/v1/search", catch_response=True
        ) as resp:
            judge(resp, "/v1/search")

    def ask(self) -> None:
        if self.rng.random() < 0.2:
            question = f"How do I use the {long_tail_query(self.rng)}?"
        else:
            question = self.rng.choices(POPULAR_QUESTIONS, QUESTION_WEIGHTS)[0]
        with self.client.post(
            "/v1/ask", json={"question": question}, name="/v1/ask", catch_response=True
        ) as resp:
            judge(resp, "/v1/ask")
            if resp.status_code == 200 and resp.json().get("degraded"):
                resp.request_meta["name"] = DEGRADED + "/v1/ask"

    def documents(self) -> None:
        with self.client.get(
            "/v1/documents", params={"limit": 20}, name="/v1/documents", catch_response=True
        ) as resp:
            judge(resp, "/v1/documents")

    def jobs(self) -> None:
        with self.client.get(
            "/v1/jobs", params={"limit": 20}, name="/v1/jobs", catch_response=True
        ) as resp:
            judge(resp, "/v1/jobs")


class ReaderUser(SkrUser):
    """Searches mostly; now and then looks at the library or the jobs."""

    weight = 3

    @task(10)
    def search_task(self) -> None:
        self.search()

    @task(1)
    def documents_task(self) -> None:
        self.documents()

    @task(1)
    def jobs_task(self) -> None:
        self.jobs()


class AskerUser(SkrUser):
    """Asks questions, and searches a little."""

    weight = 1

    @task(4)
    def ask_task(self) -> None:
        self.ask()

    @task(1)
    def search_task(self) -> None:
        self.search()


class IngesterUser(SkrUser):
    """Submits one page of the Flask docs, follows its job to the end, then another.
    At most one job of its own in flight: ingestion load grows with ingesters, not time."""

    fixed_count = 3  # replaced by --ingesters
    weight = 0

    def on_start(self) -> None:
        super().on_start()
        self.job: tuple[str, float] | None = None
        self.site = self.environment.parsed_options.site_url.rstrip("/")

    @task
    def ingest_or_poll(self) -> None:
        if self.job is None:
            self.submit()
        else:
            self.poll(*self.job)

    def submit(self) -> None:
        url = f"{self.site}/{self.rng.choice(INGEST_PAGES)}"
        with self.client.post(
            "/v1/ingest", json={"url": url}, name="/v1/ingest", catch_response=True
        ) as resp:
            judge(resp, "/v1/ingest", expected=202)
            if resp.status_code == 202:
                self.job = (resp.json()["job_id"], time.monotonic())

    def poll(self, job_id: str, started: float) -> None:
        status = ""
        with self.client.get(
            f"/v1/jobs/{job_id}", name="/v1/jobs/{id}", catch_response=True
        ) as resp:
            judge(resp, "/v1/jobs/{id}")
            if resp.status_code == 200:
                status = resp.json()["status"]
        elapsed = time.monotonic() - started
        if status in TERMINAL or elapsed > JOB_TIMEOUT_SECONDS:
            outcome = None if status == "succeeded" else RuntimeError(status or "timed out")
            # the job's whole life, submitted to finished; type JOB, kept out of HTTP figures
            self.environment.events.request.fire(
                request_type="JOB", name="ingest job", response_time=elapsed * 1000,
                response_length=0, exception=outcome, context={},
            )  # fmt: skip
            self.job = None


class BaselineUser(SkrUser):
    """One user alone, for the baseline: the readers' and askers' mix with short think
    time, so a minute gives a few hundred requests (enough for a p99)."""

    weight = 1  # run alone: run_load.py names the classes of each phase
    wait_time = between(0.1, 0.3)

    @task(13)
    def search_task(self) -> None:
        self.search()

    @task(4)
    def ask_task(self) -> None:
        self.ask()

    @task(1)
    def documents_task(self) -> None:
        self.documents()

    @task(1)
    def jobs_task(self) -> None:
        self.jobs()
