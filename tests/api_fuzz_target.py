"""The HTTP API as the fuzzer meets it: the app on fakes (with the real URL guard in front of
ingest), seeded with a finished job, a document and its chunk, and the identities a request
may come as. Shared by tests/unit/test_api_fuzz.py and bench/fuzz_api.py (`make fuzz`).

Nothing leaves the process: schemathesis calls the ASGI app in memory, and the fake
resolver answers every host name with one fixed public address that is never connected to.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import schemathesis
from schemathesis import APIOperation, Case, GenerationMode, Response
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.python import asgi
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from skr.adapters.network_guard import AddressPolicy, check_url
from skr.domain.access import Scope
from skr.entrypoints.api.app import create_app
from skr.services.access import AccessService
from skr.settings import Settings
from tests.fakes.fake_api_keys import InMemoryApiKeyStore
from tests.fakes.fake_container import fake_container_factory
from tests.fakes.fake_fetcher import DictFetcher
from tests.unit.test_ingest_and_worker import PAGE, URL

# What every response is held to: never a 5xx, and only what the schema declares for the
# operation (status code, content type, body, headers).
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# No call waits longer than this. The one stream that can stay open, GET
# /v1/jobs/{id}/events, ends once its job is final, and the only jobs the fuzzer can name
# (the seeded one) are final; the bound is for a bug that keeps a stream or a request open.
REQUEST_TIMEOUT_SECONDS = 10.0

PUBLIC_ADDRESS = "93.184.215.14"  # what every name "resolves" to; nothing connects to it


class PublicResolver:
    """Every host name resolves to one public address, without DNS."""

    async def resolve(self, host: str, port: int) -> list[str]:
        return [PUBLIC_ADDRESS]


class GuardedFetcher:
    """The fake fetcher behind the real URL guard, so the fuzzer's URLs meet the parsing
    and address checks SKR really does before it queues an ingest."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._policy = AddressPolicy(allow_private=False)

    async def check_url(self, url: str) -> None:
        await check_url(url, PublicResolver(), self._policy)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class FuzzTarget:
    """A running app, its schema, who may call it, and ids that exist in it."""

    schema: BaseSchema
    identities: dict[str, dict[str, str]]  # name -> the headers a request carries
    known: dict[str, str] = field(default_factory=dict)  # path parameter -> an id that exists

    def operation(self, label: str) -> APIOperation:
        method, path = label.split(" ", 1)
        return self.schema[path][method]

    def call_and_check(self, case: Case, identity: str, use_known: bool) -> Response:
        """Send ``case`` as ``identity`` (to a seeded id when ``use_known``) and hold the
        response to CHECKS; a failure raises with the request to reproduce it."""
        if use_known:
            for name in list(case.path_parameters or {}):
                if name in self.known:
                    case.path_parameters[name] = self.known[name]
        return case.call_and_validate(
            headers=dict(self.identities[identity]), checks=CHECKS,
            timeout=REQUEST_TIMEOUT_SECONDS,
        )  # fmt: skip


def modes_for(operation: APIOperation) -> list[GenerationMode]:
    """Invalid requests only where there is something to get wrong: a parameter or a body."""
    if any(True for _ in operation.iter_parameters()) or operation.body:
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


def build_target(data_dir: Path, *, keyed: bool, **settings: Any) -> FuzzTarget:
    """Start the app (its lifespan runs in schemathesis's ASGI client) and seed it;
    ``settings`` override the fuzzing defaults."""
    store = InMemoryApiKeyStore()
    identities: dict[str, dict[str, str]] = {"anonymous": {}}
    if keyed:
        access = AccessService(store, cache_seconds=0)

        async def token(*scopes: Scope) -> str:
            return (await access.create_key("fuzz", "fuzz", list(scopes))).token

        identities = {
            "admin": {"Authorization": f"Bearer {anyio.run(token, Scope.ADMIN)}"},
            "reader": {"Authorization": f"Bearer {anyio.run(token, Scope.READ)}"},
            "unknown key": {"Authorization": "Bearer skr_0000000000000000_" + "a" * 43},
            "anonymous": {},
        }
    defaults: dict[str, Any] = {
        "max_request_bytes": 100_000, "key": {"rate_per_second": 10_000, "rate_burst": 10_000},
    }  # fmt: skip
    factory = fake_container_factory(
        {URL: PAGE}, api_keys=store, fetcher=GuardedFetcher(DictFetcher({URL: PAGE}))
    )
    app = create_app(Settings(data_dir=data_dir, **(defaults | settings)), factory)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = identities["admin" if keyed else "anonymous"]
    target = FuzzTarget(schema=schema, identities=identities)
    target.known = _seed(app, headers)
    return target


def _seed(app: Any, headers: Mapping[str, str]) -> dict[str, str]:
    """A finished job, its document and a chunk, through the API itself."""
    with asgi.get_client(app) as client:
        client.headers.update(headers)
        job_id = client.post("/v1/ingest", json={"url": URL}).json()["job_id"]
        deadline = time.monotonic() + 10
        while client.get(f"/v1/jobs/{job_id}").json()["status"] != "succeeded":
            if time.monotonic() > deadline:
                raise AssertionError("the seeding job did not finish")
            time.sleep(0.02)
        [document] = client.get("/v1/documents").json()["documents"]
        hit = client.get("/v1/search", params={"q": "blueprint"}).json()["hits"][0]
    return {"job_id": job_id, "document_id": document["id"], "chunk_id": hit["id"]}


def stop_all() -> None:
    """End the lifespans schemathesis started (each app's container and job worker)."""
    asgi.shutdown_lifespans()
