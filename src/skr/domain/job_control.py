"""Which status a job may be paused, resumed or cancelled from, and what it becomes."""

from __future__ import annotations

from skr.domain.errors import InvalidInputError
from skr.domain.models import JobStatus

_RULES: dict[str, tuple[frozenset[JobStatus], JobStatus]] = {
    "pause": (frozenset({JobStatus.QUEUED, JobStatus.RUNNING}), JobStatus.PAUSED),
    "resume": (frozenset({JobStatus.PAUSED}), JobStatus.QUEUED),
    "cancel": (
        frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED}),
        JobStatus.CANCELLED,
    ),
}


def control_rule(action: str) -> tuple[frozenset[JobStatus], JobStatus]:
    """The statuses ``action`` applies to and the status it leads to."""
    if action not in _RULES:
        raise InvalidInputError(f"unknown job action {action!r}")
    return _RULES[action]
