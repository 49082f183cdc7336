"""FastAPI dependencies: the container built by the lifespan, and the caller's tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from skr.container import Container
from skr.domain.models import DEFAULT_TENANT


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def get_tenant() -> str:
    return DEFAULT_TENANT


ContainerDep = Annotated[Container, Depends(get_container)]
TenantDep = Annotated[str, Depends(get_tenant)]
