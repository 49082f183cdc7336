"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis): valid
and invalid requests to every operation, open and with API keys, and no response may be a
5xx or differ from what the schema declares (status, content type, body, headers).

A bounded number of examples per operation keeps this file in the unit suite; `make fuzz`
(bench/fuzz_api.py) runs many more. The SSE route is fuzzed too: it answers 404 or 422
before any stream for made-up ids, the seeded job it may name is final so its stream ends
after one event, and every call has a deadline (REQUEST_TIMEOUT_SECONDS).

Hypothesis drives schemathesis's strategies directly (``operation.as_strategy``) rather
than through its pytest plugin, whose lazy-schema runner does not work with pytest 9."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api_fuzz_target import FuzzTarget, build_target, modes_for, stop_all

EXAMPLES = 25  # per operation, generation mode and identity mix

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the work tree
    derandomize=True,  # the same cases every run: a unit test must not flake
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# Every operation the schema declares. A new route fails test_every_operation_is_fuzzed
# until it is listed here, and so fuzzed.
OPERATIONS = [
    "GET /livez", "GET /readyz", "GET /metrics",
    "POST /v1/ingest", "GET /v1/jobs", "GET /v1/jobs/{job_id}",
    "GET /v1/jobs/{job_id}/events", "POST /v1/jobs/{job_id}/{action}",
    "GET /v1/search", "POST /v1/ask",
    "GET /v1/documents", "GET /v1/documents/{document_id}",
    "DELETE /v1/documents/{document_id}", "GET /v1/collections", "POST /v1/collections",
    "GET /v1/chunks/{chunk_id}",
]  # fmt: skip

KEYED_IDENTITIES = ["admin", "reader", "unknown key", "anonymous"]


@pytest.fixture(scope="module")
def open_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    yield build_target(tmp_path_factory.mktemp("open"), keyed=False)
    stop_all()


@pytest.fixture(scope="module")
def keyed_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    yield build_target(tmp_path_factory.mktemp("keyed"), keyed=True)
    stop_all()


def fuzz(target: FuzzTarget, label: str, identities: list[str]) -> None:
    operation = target.operation(label)
    for mode in modes_for(operation):

        @given(
            case=operation.as_strategy(generation_mode=mode),
            identity=st.sampled_from(identities),
            use_known=st.booleans(),
        )
        @FUZZ_SETTINGS
        def run(case: object, identity: str, use_known: bool) -> None:
            target.call_and_check(case, identity, use_known)  # type: ignore[arg-type]

        run()


def test_every_operation_is_fuzzed(open_target: FuzzTarget) -> None:
    declared = [result.ok().label for result in open_target.schema.get_all_operations()]
    assert sorted(declared) == sorted(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_open_api_answers_only_what_its_schema_declares(
    open_target: FuzzTarget, label: str
) -> None:
    fuzz(open_target, label, ["anonymous"])


@pytest.mark.parametrize("label", OPERATIONS)
def test_api_with_keys_answers_only_what_its_schema_declares(
    keyed_target: FuzzTarget, label: str
) -> None:
    fuzz(keyed_target, label, KEYED_IDENTITIES)


def test_rate_limited_answers_match_the_schema(tmp_path: Path) -> None:
    """The fuzzer never runs a key out of its rate; this does, and holds the 429 (with
    its Retry-After) to the schema the same way."""
    target = build_target(tmp_path, keyed=True, key={"rate_per_second": 0.01, "rate_burst": 200})
    try:
        case = target.operation("GET /v1/collections").Case()
        statuses = [target.call_and_check(case, "admin", False).status_code for _ in range(201)]
    finally:
        stop_all()
    assert statuses[0] == 200 and statuses[-1] == 429
