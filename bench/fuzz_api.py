"""The long fuzzing run (`make fuzz`): every operation of the HTTP API, open and with API
keys, through schemathesis's coverage cases (boundary and malformed values, deterministic)
and then many random valid and invalid requests; every response is held to the same
checks as tests/unit/test_api_fuzz.py. Prints what was sent and answered and each distinct
failure with a request to reproduce it; exits 1 if there was any."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemathesis import Case
from tests.api_fuzz_target import FuzzTarget, build_target, modes_for, stop_all

IDENTITIES = {"open": ["anonymous"], "keyed": ["admin", "reader", "unknown key", "anonymous"]}


@dataclass
class Tally:
    requests: int = 0
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)  # (operation, status)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)  # (op, first line) -> repro
    failure_counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def send(self, target: FuzzTarget, case: Case, identity: str, use_known: bool) -> None:
        label = case.operation.label
        try:
            response = target.call_and_check(case, identity, use_known)
        except BaseException as exc:  # schemathesis's FailureGroup is a BaseExceptionGroup
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            self.requests += 1
            message = str(exc)
            key = (label, _headline(message))
            self.failure_counts[key] += 1
            self.failures.setdefault(key, message)
            return
        self.requests += 1
        self.statuses[(label, response.status_code)] += 1


def _headline(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip().startswith("- ")]
    return "; ".join(lines) or message.splitlines()[0][:160]


def run_coverage(target: FuzzTarget, name: str, tally: Tally) -> None:
    schema = target.schema
    for result in schema.get_all_operations():
        operation = result.ok()
        cases = schema.iter_coverage_cases(
            operation,
            generation_modes=modes_for(operation),
            generation_config=schema.config.generation_for(operation=operation),
        )
        for case in cases:
            for identity in IDENTITIES[name]:
                tally.send(target, case, identity, use_known=False)


def run_random(
    target: FuzzTarget, name: str, examples: int, random_seed: int, tally: Tally
) -> None:
    for result in target.schema.get_all_operations():
        operation = result.ok()
        for mode in modes_for(operation):

            @given(
                case=operation.as_strategy(generation_mode=mode),
                identity=st.sampled_from(IDENTITIES[name]),
                use_known=st.booleans(),
            )
            @seed(random_seed)
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                phases=[Phase.generate],  # every failure is kept, none shrunk
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Case, identity: str, use_known: bool) -> None:
                tally.send(target, case, identity, use_known)

            run()


def report(tallies: dict[str, Tally], seconds: float, examples: int) -> int:
    total = sum(t.requests for t in tallies.values())
    failures = sum(len(t.failures) for t in tallies.values())
    print(f"\nfuzzed {total} requests in {seconds:.0f} s ({examples} random examples per "
          f"operation and generation mode, plus schemathesis's coverage cases)")  # fmt: skip
    for name, tally in tallies.items():
        print(f"\n## {name}: {tally.requests} requests")
        by_operation: dict[str, Counter[int]] = {}
        for (label, status), count in tally.statuses.items():
            by_operation.setdefault(label, Counter())[status] = count
        for label in sorted(by_operation):
            counts = ", ".join(f"{s}×{n}" for s, n in sorted(by_operation[label].items()))
            print(f"  {label:40} {counts}")
        server_errors = sum(n for (_, s), n in tally.statuses.items() if s >= 500)
        print(f"  5xx answered: {server_errors}; distinct failures: {len(tally.failures)}")
        for key, message in tally.failures.items():
            print(f"\n  FAILURE ×{tally.failure_counts[key]} {key[0]}: {key[1]}\n")
            print("    " + message.replace("\n", "\n    "))
    print(f"\n{failures} distinct failures")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=300, help="per operation and mode")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    started = time.perf_counter()
    tallies: dict[str, Tally] = {}
    with tempfile.TemporaryDirectory() as data:
        for name in ("open", "keyed"):
            target = build_target(Path(data) / name, keyed=name == "keyed")
            tally = tallies[name] = Tally()
            try:
                run_coverage(target, name, tally)
                run_random(target, name, args.examples, args.seed, tally)
            finally:
                stop_all()
    return report(tallies, time.perf_counter() - started, args.examples)


if __name__ == "__main__":
    sys.exit(main())
