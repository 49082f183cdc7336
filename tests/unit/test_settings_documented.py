"""Every setting is documented in the README, and unsafe values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from skr.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text()
    missing = [
        f"SKR_{n.upper()}" for n in Settings.model_fields if f"`SKR_{n.upper()}`" not in text
    ]
    assert missing == []


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
