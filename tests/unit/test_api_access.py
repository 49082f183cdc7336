"""Access control over HTTP on fakes: with keys, every /v1 route wants one and its scope;
no route shows, counts or touches another tenant's data, even by ids guessed by hand;
each key's own limits answer 429 with Retry-After."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from skr.domain.access import Scope
from skr.entrypoints.api.app import create_app
from skr.services.access import AccessService
from skr.settings import KeySettings, Settings
from tests.fakes.fake_api_keys import InMemoryApiKeyStore
from tests.fakes.fake_container import fake_container_factory
from tests.unit.test_ingest_and_worker import PAGE, URL


@dataclass
class Keys:
    acme_admin: str
    acme_reader: str
    acme_ingester: str
    globex_admin: str


def make_keys(store: InMemoryApiKeyStore, client: TestClient) -> Keys:
    access = AccessService(store, cache_seconds=0)

    def token(tenant: str, *scopes: Scope) -> str:
        made = client.portal.call(access.create_key, tenant, "test", list(scopes))  # type: ignore[union-attr]
        return made.token

    return Keys(
        acme_admin=token("acme", Scope.ADMIN),
        acme_reader=token("acme", Scope.READ),
        acme_ingester=token("acme", Scope.INGEST, Scope.READ),
        globex_admin=token("globex", Scope.ADMIN),
    )


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[TestClient, Keys]]:
    store = InMemoryApiKeyStore()
    settings = Settings(data_dir=tmp_path, key=KeySettings(rate_per_second=1000, rate_burst=1000))
    app = create_app(settings, fake_container_factory({URL: PAGE}, api_keys=store))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, make_keys(store, client)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for(client: TestClient, job_id: str, token: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=auth(token)).json()
        if job["status"] in {"succeeded", "failed"}:
            return job  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError("the job did not finish")


@dataclass
class AcmeData:
    job_id: str
    document_id: str
    chunk_id: str


def acme_data(client: TestClient, keys: Keys) -> AcmeData:
    created = client.post("/v1/collections", json={"name": "secret"}, headers=auth(keys.acme_admin))
    assert created.status_code == 201, created.text
    accepted = client.post(
        "/v1/ingest", json={"url": URL, "collection": "secret"}, headers=auth(keys.acme_admin)
    )
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    assert wait_for(client, job_id, keys.acme_admin)["status"] == "succeeded"
    listed = client.get(
        "/v1/documents", params={"collection": "secret"}, headers=auth(keys.acme_admin)
    ).json()
    [document] = listed["documents"]
    hits = client.get(
        "/v1/search", params={"q": "blueprint", "collection": "secret"},
        headers=auth(keys.acme_admin),
    ).json()["hits"]  # fmt: skip
    return AcmeData(job_id, document["id"], hits[0]["id"])


# Every /v1 route (method, path template), probed as the other tenant below. A new route
# fails test_every_v1_route_is_probed until it is added here and to the probes.
V1_ROUTES = {
    ("POST", "/v1/ingest"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/{job_id}"),
    ("GET", "/v1/jobs/{job_id}/events"), ("POST", "/v1/jobs/{job_id}/{action}"),
    ("GET", "/v1/search"), ("POST", "/v1/ask"), ("GET", "/v1/documents"),
    ("GET", "/v1/documents/{document_id}"), ("DELETE", "/v1/documents/{document_id}"),
    ("GET", "/v1/collections"), ("POST", "/v1/collections"), ("GET", "/v1/chunks/{chunk_id}"),
}  # fmt: skip


def test_every_v1_route_is_probed(keyed: tuple[TestClient, Keys]) -> None:
    client, _ = keyed
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    served = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/v1/")
        for method in operations
    }
    assert served == V1_ROUTES


def test_without_a_valid_key_every_v1_route_is_401(keyed: tuple[TestClient, Keys]) -> None:
    client, _ = keyed
    for method, template in sorted(V1_ROUTES):
        path = template.format(job_id="x", action="pause", document_id="x", chunk_id="x")
        for headers in [{}, auth("skr_0000000000000000_" + "a" * 43), {"X-API-Key": "nonsense"}]:
            answer = client.request(method, path, headers=headers, json={})
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert answer.headers["content-type"].startswith("application/problem+json")
    assert client.get("/livez").status_code == 200  # health is for balancers: no key


def test_scopes_decide_what_a_key_may_do(keyed: tuple[TestClient, Keys]) -> None:
    client, keys = keyed
    reader = auth(keys.acme_reader)
    assert client.get("/v1/search", params={"q": "x"}, headers=reader).status_code == 200
    assert client.post("/v1/ask", json={"question": "what?"}, headers=reader).status_code == 200
    refused = client.post("/v1/ingest", json={"url": URL}, headers=reader)
    assert refused.status_code == 403 and "may not ingest" in refused.json()["detail"]
    data = acme_data(client, keys)
    ingester = auth(keys.acme_ingester)
    assert client.delete(f"/v1/documents/{data.document_id}", headers=ingester).status_code == 403
    assert client.post("/v1/ingest", json={"url": URL}, headers=ingester).status_code == 202
    admin = auth(keys.acme_admin)
    assert client.delete(f"/v1/documents/{data.document_id}", headers=admin).status_code == 204


def test_another_tenant_sees_counts_and_touches_nothing(keyed: tuple[TestClient, Keys]) -> None:
    client, keys = keyed
    data = acme_data(client, keys)
    other = auth(keys.globex_admin)
    probes = {
        ("GET", "/v1/jobs"): lambda: client.get("/v1/jobs", headers=other),
        ("GET", "/v1/jobs/{job_id}"): lambda: client.get(f"/v1/jobs/{data.job_id}", headers=other),
        ("GET", "/v1/jobs/{job_id}/events"): lambda: client.get(
            f"/v1/jobs/{data.job_id}/events", headers=other
        ),
        ("POST", "/v1/jobs/{job_id}/{action}"): lambda: client.post(
            f"/v1/jobs/{data.job_id}/cancel", headers=other
        ),
        ("GET", "/v1/search"): lambda: client.get(
            "/v1/search", params={"q": "blueprint register", "collection": "secret"}, headers=other
        ),
        ("POST", "/v1/ask"): lambda: client.post(
            "/v1/ask",
            json={"question": "How to register a blueprint?", "collection": "secret"},
            headers=other,
        ),
        ("GET", "/v1/documents"): lambda: client.get(
            "/v1/documents", params={"collection": "secret"}, headers=other
        ),
        ("GET", "/v1/documents/{document_id}"): lambda: client.get(
            f"/v1/documents/{data.document_id}", headers=other
        ),
        ("DELETE", "/v1/documents/{document_id}"): lambda: client.delete(
            f"/v1/documents/{data.document_id}", headers=other
        ),
        ("GET", "/v1/collections"): lambda: client.get("/v1/collections", headers=other),
        ("GET", "/v1/chunks/{chunk_id}"): lambda: client.get(
            f"/v1/chunks/{data.chunk_id}", headers=other
        ),
        ("POST", "/v1/ingest"): lambda: client.post(
            "/v1/ingest", json={"url": URL, "collection": "secret"}, headers=other
        ),
        ("POST", "/v1/collections"): lambda: client.post(
            "/v1/collections", json={"name": "secret"}, headers=other
        ),
    }
    assert set(probes) == V1_ROUTES
    answers = {route: probe() for route, probe in probes.items()}
    for route in [
        ("GET", "/v1/jobs/{job_id}"), ("GET", "/v1/jobs/{job_id}/events"),
        ("POST", "/v1/jobs/{job_id}/{action}"), ("GET", "/v1/search"), ("POST", "/v1/ask"),
        ("GET", "/v1/documents"), ("GET", "/v1/documents/{document_id}"),
        ("DELETE", "/v1/documents/{document_id}"), ("GET", "/v1/chunks/{chunk_id}"),
        ("POST", "/v1/ingest"),
    ]:  # fmt: skip
        assert answers[route].status_code == 404, (route, answers[route].text)
    assert answers[("GET", "/v1/jobs")].json()["jobs"] == []
    assert [c["name"] for c in answers[("GET", "/v1/collections")].json()["collections"]] == []
    assert answers[("POST", "/v1/collections")].status_code == 201  # its own, of that name
    for answer in answers.values():  # (a 404 may repeat the id it was asked for, no more)
        assert URL not in answer.text and "register_blueprint" not in answer.text
    # and acme's data is all still there
    mine = auth(keys.acme_admin)
    assert client.get(f"/v1/documents/{data.document_id}", headers=mine).status_code == 200
    assert wait_for(client, data.job_id, keys.acme_admin)["status"] == "succeeded"


def test_a_key_over_its_rate_or_its_jobs_gets_429(tmp_path: Path) -> None:
    store = InMemoryApiKeyStore()
    settings = Settings(
        data_dir=tmp_path, key=KeySettings(rate_per_second=0.5, rate_burst=3, max_active_jobs=1)
    )
    app = create_app(
        settings, fake_container_factory({URL: PAGE}, api_keys=store, run_worker=False)
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        keys = make_keys(store, client)
        first = client.post("/v1/ingest", json={"url": URL}, headers=auth(keys.acme_admin))
        assert first.status_code == 202
        second = client.post("/v1/ingest", json={"url": URL}, headers=auth(keys.acme_admin))
        assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
        assert "jobs queued" in second.json()["detail"]
        limited = client.get("/v1/jobs", headers=auth(keys.acme_admin))  # 3rd of a burst of 3
        assert limited.status_code == 200
        over = client.get("/v1/jobs", headers=auth(keys.acme_admin))
        assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
        assert client.get("/v1/jobs", headers=auth(keys.acme_reader)).status_code == 200


def messages(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        return " ".join(messages(inner) for inner in error.exceptions)
    return str(error)


def test_open_mode_refuses_to_serve_beyond_loopback(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, host="0.0.0.0"), fake_container_factory({}))
    with pytest.raises(BaseException) as refused, TestClient(app):  # noqa: PT011
        pass
    assert "no API key, so it serves only on loopback" in messages(refused.value)


def test_the_web_page_signs_in_with_a_key_cookie(keyed: tuple[TestClient, Keys]) -> None:
    client, keys = keyed
    to_sign_in = client.get("/documents", follow_redirects=False)
    assert to_sign_in.status_code == 303 and to_sign_in.headers["location"] == "/signin"
    refused = client.post("/signin", content="key=wrong", follow_redirects=False,
                          headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert refused.status_code == 401 and "not valid" in refused.text
    signed_in = client.post("/signin", data={"key": keys.globex_admin}, follow_redirects=False)
    assert signed_in.status_code == 303
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = client.get("/documents")  # the client keeps the cookie, as a browser would
    assert page.status_code == 200 and "Library" in page.text
    assert client.get("/v1/collections").status_code == 200  # the page's script calls too
    client.post("/signout", follow_redirects=False)
    assert client.get("/documents", follow_redirects=False).status_code == 303


def test_an_open_skr_beyond_loopback_answers_no_one(tmp_path: Path) -> None:
    """Had the store been down at startup, the loopback check could not run then; every
    request makes it again, so such a server never serves without keys."""
    app = create_app(Settings(data_dir=tmp_path), fake_container_factory({}))
    with TestClient(app, raise_server_exceptions=False) as client:
        container = client.app.state.container  # type: ignore[attr-defined]
        object.__setattr__(container, "settings", Settings(data_dir=tmp_path, host="0.0.0.0"))
        refused = client.get("/v1/collections")
        assert refused.status_code == 401 and "beyond loopback" in refused.json()["detail"]
