"""The HTTP API on fakes: the contract's shapes, and problem+json for every bad input."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from skr.entrypoints.api.app import create_app
from skr.settings import Settings
from tests.fakes.fake_container import fake_container_factory
from tests.unit.test_ingest_and_worker import PAGE, URL


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, max_request_bytes=100_000)
    app = create_app(settings, fake_container_factory({URL: PAGE}))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def assert_problem(response: object, status: int, fragment: str = "") -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status and body["title"] and body["detail"]
    assert fragment.lower() in body["detail"].lower()
    assert "Traceback" not in response.text  # type: ignore[attr-defined]


def wait_for_job(client: TestClient, job_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            return job  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError("job did not finish")


def test_ingest_search_ask_documents_round_trip(client: TestClient) -> None:
    accepted = client.post("/v1/ingest", json={"url": URL})
    assert accepted.status_code == 202
    assert accepted.headers["location"] == f"/v1/jobs/{accepted.json()['job_id']}"
    job = wait_for_job(client, accepted.json()["job_id"])
    assert job["status"] == "succeeded"
    assert job["counters"]["indexed"] == 1  # type: ignore[index]
    hits = client.get("/v1/search", params={"q": "register blueprint"}).json()["hits"]
    assert hits and hits[0]["url"] == URL
    images = client.get("/v1/search", params={"q": "diagram", "kind": "image"}).json()["hits"]
    assert images[0]["kind"] == "image"
    assert images[0]["image_url"] == "http://docs.test/static/diagram.png"
    answer = client.post("/v1/ask", json={"question": "How is a blueprint registered?"}).json()
    assert answer["mode"] == "extractive" and answer["degraded"] is False
    assert answer["citations"][0]["url"] == URL
    docs = client.get("/v1/documents").json()
    assert docs["next_cursor"] is None
    [doc] = docs["documents"]
    assert client.get(f"/v1/documents/{doc['id']}").json()["title"] == "Blueprints"
    assert client.delete(f"/v1/documents/{doc['id']}").status_code == 204
    assert client.get("/v1/search", params={"q": "register blueprint"}).json()["hits"] == []
    assert_problem(client.get(f"/v1/documents/{doc['id']}"), 404)


def test_jobs_list_and_failed_job_reason(client: TestClient) -> None:
    accepted = client.post("/v1/ingest", json={"url": "http://docs.test/missing"}).json()
    job = wait_for_job(client, accepted["job_id"])
    assert job["status"] == "failed"
    assert job["reason"] == "the server answered 404 Not Found"
    assert job["errors"] == [{"url": "http://docs.test/missing", "reason": job["reason"]}]
    listed = client.get("/v1/jobs").json()["jobs"]
    assert listed[0]["id"] == accepted["job_id"]


def test_ask_streams_events(client: TestClient) -> None:
    wait_for_job(client, client.post("/v1/ingest", json={"url": URL}).json()["job_id"])
    with client.stream(
        "POST", "/v1/ask", json={"question": "blueprint?"}, headers={"accept": "text/event-stream"}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    assert "event: token" in body and "event: answer" in body and body.endswith("data: {}\n\n")


def sse_jobs(body: str) -> list[dict[str, Any]]:
    """The JSON of every ``event: job`` in a text/event-stream body."""
    jobs = []
    for block in body.split("\n\n"):
        lines = block.splitlines()
        if "event: job" in lines:
            data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
            jobs.append(json.loads("\n".join(data)))
    return jobs


def test_job_events_stream_until_the_job_succeeds(client: TestClient) -> None:
    job_id = client.post("/v1/ingest", json={"url": URL}).json()["job_id"]
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    jobs = sse_jobs(body)
    assert jobs and jobs[-1]["status"] == "succeeded"
    assert [j["id"] for j in jobs] == [job_id] * len(jobs)
    assert jobs[-1] == client.get(f"/v1/jobs/{job_id}").json()  # the same schema and values
    for before, after in itertools.pairwise(jobs):
        for name, count in before["counters"].items():
            assert after["counters"][name] >= count
    # a finished job: one event, then the stream ends
    again = sse_jobs(client.get(f"/v1/jobs/{job_id}/events").text)
    assert [j["status"] for j in again] == ["succeeded"]


def test_job_events_of_an_unknown_job_are_a_404(client: TestClient) -> None:
    assert_problem(client.get("/v1/jobs/unknown/events"), 404, "unknown")


def test_collections(client: TestClient) -> None:
    assert [c["name"] for c in client.get("/v1/collections").json()["collections"]] == ["default"]
    assert client.post("/v1/collections", json={"name": "team-a"}).status_code == 201
    assert_problem(client.post("/v1/collections", json={"name": "team-a"}), 409, "already exists")
    assert_problem(client.post("/v1/collections", json={"name": "../etc"}), 422, "name")
    assert_problem(client.get("/v1/search", params={"q": "x", "collection": "nope"}), 404)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "fragment"),
    [
        ("POST", "/v1/ingest", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "not valid JSON"),
        ("POST", "/v1/ingest", {"json": {}}, 422, "url"),
        ("POST", "/v1/ingest", {"json": {"url": "ftp://x.test/file"}}, 422, "http"),
        ("POST", "/v1/ingest", {"json": {"url": "javascript:alert(1)"}}, 422, ""),
        ("POST", "/v1/ingest", {"json": {"url": URL, "extra": 1}}, 422, "extra"),
        ("POST", "/v1/ingest", {"json": {"url": URL, "collection": "nope"}}, 404, "nope"),
        ("POST", "/v1/ask", {"json": {"question": ""}}, 422, "question"),
        ("POST", "/v1/ask", {"json": {"question": "x", "k": 1000}}, 422, "k"),
        ("POST", "/v1/ask", {"content": b"x" * 10_000_000, "headers": {"content-type": "application/json"}}, 413, "larger"),
        ("GET", "/v1/search", {}, 422, "q"),
        ("GET", "/v1/search?q=" + "a" * 10_000, {}, 422, "q"),
        ("GET", "/v1/search?q=x&k=0", {}, 422, "k"),
        ("GET", "/v1/search?q=x&k=101", {}, 422, "k"),
        ("GET", "/v1/search?q=x&kind=video", {}, 422, "kind"),
        ("GET", "/v1/jobs/unknown", {}, 404, "unknown"),
        ("POST", "/v1/jobs/unknown/pause", {}, 404, ""),
        ("POST", "/v1/jobs/unknown/explode", {}, 422, ""),
        ("GET", "/v1/documents/unknown", {}, 404, ""),
        ("DELETE", "/v1/documents/unknown", {}, 404, ""),
        ("GET", "/v1/documents?cursor=zzz", {}, 422, "cursor"),
        ("GET", "/v1/documents?limit=1000", {}, 422, "limit"),
        ("GET", "/v1/nothing-here", {}, 404, ""),
        ("PUT", "/v1/search", {}, 405, ""),
    ],
)  # fmt: skip
def test_bad_input_is_a_problem_never_a_500(
    client: TestClient,
    method: str,
    path: str,
    kwargs: dict[str, object],
    status: int,
    fragment: str,
) -> None:
    assert_problem(client.request(method, path, **kwargs), status, fragment)  # type: ignore[arg-type]


def test_health_and_metrics(client: TestClient) -> None:
    assert client.get("/livez").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["store"] == "ok"
    client.get("/v1/search", params={"q": "x"})
    text = client.get("/metrics").text
    assert 'skr_http_requests_total{method="GET",route="/v1/search",status="200"}' in text
    assert "skr_job_queue_depth" in text
    assert "skr_http_request_duration_seconds_bucket" in text
