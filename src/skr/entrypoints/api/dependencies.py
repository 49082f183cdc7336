"""FastAPI dependencies: the container built by the lifespan, and who is calling.

With no active API key, SKR runs open (on loopback only, which the app checks at
startup) and every caller is the default tenant. With keys, every request names one:
``Authorization: Bearer <key>``, ``X-API-Key: <key>``, or the web page's ``skr_key``
cookie; the key's tenant is the caller's, and its scopes decide what it may do."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import partial
from typing import Annotated

from fastapi import Depends, Request

from skr.domain.access import ApiKey, Scope
from skr.domain.errors import AuthenticationError, PermissionDeniedError
from skr.domain.models import DEFAULT_TENANT
from skr.entrypoints.api.admission import ASK, SEARCH, Admission
from skr.services.search import Admit
from skr.wiring.container import Container

KEY_COOKIE = "skr_key"


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str
    key: ApiKey | None  # None: SKR runs open, without keys


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def needed_scope(method: str, path: str) -> Scope:
    """What a request needs: reading (search and ask included), ingesting (new pages,
    crawls, collections, job control), or admin (deleting)."""
    if method in ("GET", "HEAD", "OPTIONS") or path == "/v1/ask":
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
    if await container.access.open_mode():
        if not is_loopback(container.settings.host):  # (e.g. the store was down at startup)
            raise AuthenticationError(
                "SKR has no API key and listens beyond loopback, so it answers no one: "
                "create a key with `skr keys create`"
            )
        return Caller(DEFAULT_TENANT, None)
    key = await container.access.authenticate(presented_key(request))
    scope = needed_scope(request.method, request.url.path)
    if not key.allows(scope):
        raise PermissionDeniedError(f"this API key may not {scope.value}; it has {_listed(key)}")
    container.key_limiter.take(key.id)
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


async def container_dependency(request: Request) -> Container:
    """``get_container`` as a dependency. Async, so FastAPI calls it on the event loop: a
    plain ``def`` dependency is run in its thread pool, a hand-off to a thread and back
    on every request for a dictionary look-up."""
    return get_container(request)


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


ContainerDep = Annotated[Container, Depends(container_dependency)]
SearchAdmissionDep = Annotated[Admit, Depends(search_admission)]
AskAdmissionDep = Annotated[Admit, Depends(ask_admission)]
CallerDep = Annotated[Caller, Depends(get_caller)]
TenantDep = Annotated[str, Depends(get_tenant)]
