"""The one error tree of SKR. HTTP status codes live only in the API's error mapping.

SKRError
├── InvalidInputError          the caller asked for something malformed
│   └── BlockedURLError        the network guard refuses the URL
├── NotFoundError              an id or name that does not exist
├── ConflictError              the request clashes with existing state
├── OverloadedError            shed work; try again later
├── AuthenticationError        no API key, or one SKR does not know (or revoked)
├── PermissionDeniedError      the key lacks the scope the request needs
├── RateLimitedError           the key is over its own limits; try again later
├── DependencyError            a backing service failed (store, model, LLM)
│   └── GenerationError        the answer-writing model failed
└── FetchError                 a page could not be fetched (reason is for people)
    └── (BlockedURLError is also raised while fetching)
"""

from __future__ import annotations


class SKRError(Exception):
    """Base of every error SKR raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInputError(SKRError):
    pass


class FetchError(SKRError):
    """A page could not be fetched; ``detail`` says why in words a person understands.

    ``status`` is the HTTP status the server answered, when it answered one;
    ``retry_after_seconds`` what it asked for in ``Retry-After``; ``transient`` whether
    trying again later may succeed (timeouts, refused connections, 429 and 5xx)."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        retry_after_seconds: float | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.retry_after_seconds = retry_after_seconds
        self.transient = transient

    @property
    def gone(self) -> bool:
        """The server says the page does not exist (404 or 410)."""
        return self.status in (404, 410)


class BlockedURLError(InvalidInputError, FetchError):
    """The network guard refused the URL (private, loopback, link-local, ...)."""


class NotFoundError(SKRError):
    pass


class ConflictError(SKRError):
    pass


class OverloadedError(SKRError):
    def __init__(self, detail: str, retry_after_seconds: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class AuthenticationError(SKRError):
    pass


class PermissionDeniedError(SKRError):
    pass


class RateLimitedError(SKRError):
    def __init__(self, detail: str, retry_after_seconds: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class DependencyError(SKRError):
    pass


class GenerationError(DependencyError):
    pass
