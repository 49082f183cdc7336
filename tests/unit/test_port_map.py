"""The port map of docs/architecture.md is true: every port module has a row, every class
it names exists and has its port's methods, and each contract suite runs every test against
the port's fake and every implementation the row lists (save those marked "not run").

Which classes a suite runs is read from its collected tests: contract suites are
parametrized by the classes they build (tests/fixtures/kinds.py), so dropping the fake from
a suite's parameters drops it from ``item.callspec.params``, and this test fails.
"""

from __future__ import annotations

import importlib
import re
import typing
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PORTS = ROOT / "src" / "skr" / "ports"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
_CODE = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Implementation:
    reference: str
    run: bool  # False for an implementation marked "not run" (its suite cannot run it)


@dataclass(frozen=True)
class Row:
    port: str  # "skr.ports.store.Store", or just the module when it holds no port
    implementations: tuple[Implementation, ...]
    fake: str | None
    suite: str | None

    @property
    def module(self) -> str:
        return self.port if self.port.count(".") == 2 else self.port.rsplit(".", 1)[0]


def port_map_rows(text: str) -> list[Row]:
    section = text.split("\n## Port map\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        port, implementations, fake, suite = (
            cell.strip() for cell in line.strip("| ").split(" | ")
        )
        entries = [
            Implementation(reference, run="not run" not in entry.split("`", 1)[0])
            for entry in implementations.split("<br>")
            for reference in _CODE.findall(entry)
            if reference.startswith("skr.adapters.")
        ]
        rows.append(
            Row(
                port=_CODE.findall(port)[0],
                implementations=tuple(entries),
                fake=next(iter(_CODE.findall(fake)), None),
                suite=next(iter(_CODE.findall(suite)), None),
            )
        )
    return rows


def resolve(reference: str) -> type:
    module, name = reference.rsplit(".", 1)
    found = getattr(importlib.import_module(module), name)
    assert isinstance(found, type), reference
    return found


def is_protocol(cls: type) -> bool:
    return bool(getattr(cls, "_is_protocol", False)) and cls is not typing.Protocol


def protocol_members(protocol: type) -> set[str]:
    members: set[str] = set()
    for base in protocol.__mro__:
        if is_protocol(base):
            members |= {name for name in vars(base) if not name.startswith("_")}
            members |= set(getattr(base, "__annotations__", {}))
    return members


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return port_map_rows(ARCHITECTURE.read_text(encoding="utf-8"))


class _ClassesPerTest:
    """A pytest plugin that notes, per suite file and test function, the classes its
    collected tests are parametrized with."""

    def __init__(self) -> None:
        self.classes: dict[str, dict[str, set[type]]] = defaultdict(lambda: defaultdict(set))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            suite = Path(str(item.path)).relative_to(ROOT).as_posix()
            name = getattr(item, "originalname", item.name)
            params = getattr(getattr(item, "callspec", None), "params", {})
            self.classes[suite][name] |= {v for v in params.values() if isinstance(v, type)}


@pytest.fixture(scope="module")
def suites_run(rows: list[Row]) -> dict[str, dict[str, set[type]]]:
    suites = sorted({row.suite for row in rows if row.suite is not None})
    recorder = _ClassesPerTest()
    code = pytest.main(
        ["--collect-only", "-q", "-p", "no:cacheprovider", *(str(ROOT / s) for s in suites)],
        plugins=[recorder],
    )
    assert code == pytest.ExitCode.OK, "the contract suites do not collect"
    return recorder.classes


def test_every_port_module_has_a_row(rows: list[Row]) -> None:
    modules = {f"skr.ports.{path.stem}" for path in PORTS.glob("*.py") if path.stem != "__init__"}
    mapped = [row.module for row in rows]
    assert not modules - set(mapped), f"ports missing from the map: {modules - set(mapped)}"
    assert not set(mapped) - modules, f"rows of no port module: {set(mapped) - modules}"
    assert len(mapped) == len(set(mapped)), "a port has two rows"


def test_each_row_names_a_port_or_says_why_the_module_holds_none(rows: list[Row]) -> None:
    for row in rows:
        module = importlib.import_module(row.module)
        if row.port == row.module:
            held = [v for v in vars(module).values() if isinstance(v, type) and is_protocol(v)]
            assert held == [], f"{row.module} holds a port but its row names none"
            assert not row.implementations and row.fake is None and row.suite is None
        else:
            assert is_protocol(resolve(row.port)), f"{row.port} is not a Protocol"
            assert row.implementations and row.fake and row.suite, row.port


def test_every_listed_class_exists_and_has_the_ports_methods(rows: list[Row]) -> None:
    for row in rows:
        if row.port == row.module:
            continue
        members = protocol_members(resolve(row.port))
        assert members, row.port
        assert row.fake is not None
        for reference in [row.fake, *(i.reference for i in row.implementations)]:
            missing = {m for m in members if not hasattr(resolve(reference), m)}
            assert not missing, f"{reference} lacks {sorted(missing)} of {row.port}"


def test_every_listed_suite_exists(rows: list[Row]) -> None:
    for row in rows:
        if row.suite is not None:
            assert (ROOT / row.suite).is_file(), row.suite


def test_every_test_of_a_suite_runs_the_fake_and_each_implementation(
    rows: list[Row], suites_run: dict[str, dict[str, set[type]]]
) -> None:
    for row in rows:
        if row.suite is None or row.fake is None:
            continue
        tests = suites_run.get(row.suite)
        assert tests, f"{row.suite} collected no test"
        wanted = {resolve(row.fake)} | {resolve(i.reference) for i in row.implementations if i.run}
        for name, classes in tests.items():
            missing = sorted(cls.__name__ for cls in wanted - classes)
            assert not missing, f"{row.suite}::{name} does not run {missing}"
