"""Every setting is documented in the README, and unsafe values are refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from skr.settings import Settings, environment_names

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text()
    missing = [name for name in environment_names() if f"`{name}`" not in text]
    assert missing == []


def test_every_setting_the_readme_lists_is_read() -> None:
    """The README's settings table names no variable SKR does not read (a section's
    prefix that renamed one would show here)."""
    table = README.read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(SKR_[A-Z0-9_]+)`", table, flags=re.MULTILINE))
    assert listed, "the README has no settings table"
    assert listed - set(environment_names()) == set()


@pytest.mark.parametrize(
    ("name", "value", "path"),
    [
        ("SKR_LLM_MODEL", "a-model", "llm.model"),
        ("SKR_CHUNK_MAX_TOKENS", "100", "ingest.chunk_max_tokens"),
        ("SKR_EXTRACTION_PROCESSES", "0", "ingest.extraction_processes"),
        ("SKR_RRF_K", "7", "search.rrf_k"),
        ("SKR_DB_POOL_MAX_SIZE", "3", "db_pool.max_size"),
        ("SKR_WORKER_HTTP_PORT", "9101", "worker.http_port"),
        ("SKR_HOST", "127.0.0.2", "host"),
    ],
)
def test_each_variable_fills_its_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, path: str
) -> None:
    assert environment_names()[name] == path
    monkeypatch.setenv(name, value)
    found: object = Settings()
    for part in path.split("."):
        found = getattr(found, part)
    assert str(found) == value


def test_readme_opens_with_the_two_commands() -> None:
    head = README.read_text()[:800]
    assert "make serve" in head and "make test" in head


@pytest.mark.parametrize(
    ("name", "value"),
    [("SKR_DATABASE_URL", "mysql://x"), ("SKR_PORT", "0"), ("SKR_CHUNK_MAX_TOKENS", "1000")],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
