"""FastAPI dependencies: the services of the container built by the lifespan, and who is
calling. Routes depend on the services they use, never on the whole container.

With no active API key, SKR runs open (on loopback only, which the app checks at
startup) and every caller is the default tenant. With keys, every request names one:
``Authorization: Bearer <key>``, ``X-API-Key: <key>``, or the web page's ``skr_key``
cookie; the key's tenant is the caller's, and its scopes decide what it may do."""

from __future__ import annotations

import ipaddress
from functools import partial
from typing import Annotated

from fastapi import Depends, Request

from skr.domain.access import ApiKey, Caller, Scope
from skr.domain.errors import AuthenticationError, PermissionDeniedError
from skr.domain.models import DEFAULT_TENANT
from skr.entrypoints.api.admission import ASK, SEARCH, Admission
from skr.observability.gauges import ScrapeGauges
from skr.observability.metrics import Metrics
from skr.observability.readiness import ReadinessCheck
from skr.services.collections import CollectionResolver
from skr.services.jobs.service import JobService
from skr.services.knowledge import KnowledgeService
from skr.services.library import LibraryService
from skr.services.search import Admit
from skr.settings import Settings
from skr.wiring.container import Container, Services

KEY_COOKIE = "skr_key"


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


# POSTs that only read (questions)
READING_POSTS = frozenset({"/v1/ask"})


def needed_scope(method: str, path: str) -> Scope:
    """What a request needs: reading (search and ask included), ingesting
    (new pages, crawls, collections, job control), or admin (deleting)."""
    if method in ("GET", "HEAD", "OPTIONS") or path in READING_POSTS:
        return Scope.READ
    if method == "DELETE":
        return Scope.ADMIN
    return Scope.INGEST


def presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or request.cookies.get(KEY_COOKIE)


async def get_caller(request: Request) -> Caller:
    container = get_container(request)
    access = container.services.access
    if await access.open_mode():
        if not is_loopback(container.settings.host):  # (e.g. the store was down at startup)
            raise AuthenticationError(
                "SKR has no API key and listens beyond loopback, so it answers no one: "
                "create a key with `skr keys create`"
            )
        return Caller(DEFAULT_TENANT, None)
    key = await access.authenticate(presented_key(request))
    scope = needed_scope(request.method, request.url.path)
    if not key.allows(scope):
        raise PermissionDeniedError(f"this API key may not {scope.value}; it has {_listed(key)}")
    container.services.key_limiter.take(key.id)
    return Caller(key.tenant, key)


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` keeps SKR on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _listed(key: ApiKey) -> str:
    return ", ".join(sorted(s.value for s in key.scopes)) or "no scope"


async def get_tenant(caller: Annotated[Caller, Depends(get_caller)]) -> str:
    return caller.tenant


def _services(request: Request) -> Services:
    return get_container(request).services


# Async, so FastAPI calls them on the event loop: a plain ``def`` dependency is run in its
# thread pool, a hand-off to a thread and back on every request for an attribute look-up.
async def knowledge_service(request: Request) -> KnowledgeService:
    return _services(request).knowledge


async def job_service(request: Request) -> JobService:
    return _services(request).jobs


async def library_service(request: Request) -> LibraryService:
    return _services(request).library


async def collection_resolver(request: Request) -> CollectionResolver:
    return _services(request).collections


async def settings_dependency(request: Request) -> Settings:
    return get_container(request).settings


async def metrics_dependency(request: Request) -> Metrics:
    return get_container(request).metrics


async def readiness_dependency(request: Request) -> ReadinessCheck:
    return _services(request).readiness


async def gauges_dependency(request: Request) -> ScrapeGauges:
    return _services(request).gauges


async def search_admission(request: Request) -> Admit:
    """The search gate, entered by the search itself only when its result is not cached
    (``admission``)."""
    admission: Admission = request.app.state.admission
    return partial(admission.admitted, SEARCH)


async def ask_admission(request: Request) -> Admit:
    """The ask gate, entered by the question's handler around its own work, not around the
    answer model's call (``admission``)."""
    admission: Admission = request.app.state.admission
    return partial(admission.admitted, ASK)


KnowledgeDep = Annotated[KnowledgeService, Depends(knowledge_service)]
JobServiceDep = Annotated[JobService, Depends(job_service)]
LibraryDep = Annotated[LibraryService, Depends(library_service)]
CollectionsDep = Annotated[CollectionResolver, Depends(collection_resolver)]
SettingsDep = Annotated[Settings, Depends(settings_dependency)]
MetricsDep = Annotated[Metrics, Depends(metrics_dependency)]
ReadinessDep = Annotated[ReadinessCheck, Depends(readiness_dependency)]
GaugesDep = Annotated[ScrapeGauges, Depends(gauges_dependency)]
SearchAdmissionDep = Annotated[Admit, Depends(search_admission)]
AskAdmissionDep = Annotated[Admit, Depends(ask_admission)]
CallerDep = Annotated[Caller, Depends(get_caller)]
TenantDep = Annotated[str, Depends(get_tenant)]
