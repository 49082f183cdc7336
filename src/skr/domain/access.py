"""Who may do what: API keys, each bound to one tenant and a set of scopes."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Scope(enum.StrEnum):
    READ = "read"  # search, ask, and reading anything of the tenant's
    INGEST = "ingest"  # add pages and crawls, control jobs, create collections
    ADMIN = "admin"  # everything, deleting documents included

    def allows(self, needed: Scope) -> bool:
        return self is Scope.ADMIN or self is needed


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as stored: never its secret, only the secret's hash (kept by the store)."""

    id: str
    tenant: str
    name: str
    scopes: frozenset[Scope]
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, needed: Scope) -> bool:
        return any(scope.allows(needed) for scope in self.scopes)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request comes from: a tenant, and the key it presented (None while SKR runs
    open, without keys, when every caller is the default tenant)."""

    tenant: str
    key: ApiKey | None
