"""`skr --help` and every command's: the command list gives one line per command (the
first paragraph of its help, whole), no flag shows a type marker such as `<bool>`,
every argument and option has help text, and asking for help exits 0."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from skr.entrypoints.cli.app import app

# click's layout rewraps to the terminal; a fixed width keeps the test the same anywhere
WIDTH = 80


def _walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _walk(sub, (*path, name))
    return found


COMMANDS = _walk(typer.main.get_command(app))
SUBCOMMANDS = [(path, command) for path, command in COMMANDS if path]
GROUPS = [(path, command) for path, command in COMMANDS if getattr(command, "commands", None)]


def _ids(entries: list[tuple[tuple[str, ...], Any]]) -> list[str]:
    return [" ".join(("skr", *path)) for path, _ in entries]


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=WIDTH)
    assert result.exit_code == 0, result.output
    return result.output


def _section(output: str, title: str) -> list[str]:
    """The lines under ``title:`` up to the next blank line."""
    lines = output.splitlines()
    if f"{title}:" not in lines:
        return []
    start = lines.index(f"{title}:") + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def _summary(command: Any) -> str:
    """The first paragraph of the command's help, on one line."""
    return " ".join((command.help or "").strip().split("\n\n")[0].split())


def test_the_walk_finds_every_command_and_the_keys_group() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"ingest", "search", "ask", "jobs", "serve", "worker", "migrate"} <= names
    assert {"export", "import", "eval", "keys", "keys create", "keys list"} <= names
    assert "keys revoke" in names


@pytest.mark.parametrize(("path", "group"), GROUPS, ids=_ids(GROUPS))
def test_the_command_list_has_one_whole_line_per_command(path: tuple[str, ...], group: Any) -> None:
    listed = _section(_help(path), "Commands")
    assert len(listed) == len(group.commands), listed  # a wrapped entry adds a line
    for line, (name, command) in zip(listed, group.commands.items(), strict=True):
        summary = _summary(command)
        assert summary, f"{name} has no help"
        assert line.split() == [name, *summary.split()], line  # whole: not cut with "..."


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=_ids(COMMANDS))
def test_help_shows_no_type_marker_on_flags_or_options(path: tuple[str, ...], command: Any) -> None:
    output = _help(path)
    assert "<bool>" not in output
    # an option that takes a value names it with a metavar (NAME, N, URL), not a type
    for line in _section(output, "Options"):
        assert not re.search(r"<[^>]*>", line), line


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=_ids(COMMANDS))
def test_every_argument_and_option_has_help(path: tuple[str, ...], command: Any) -> None:
    missing = [param.name for param in command.params if not (param.help or "").strip()]
    assert not missing, f"{' '.join(path)}: no help for {missing}"


@pytest.mark.parametrize(("path", "command"), SUBCOMMANDS, ids=_ids(SUBCOMMANDS))
def test_the_longer_text_is_only_under_the_commands_own_help(
    path: tuple[str, ...], command: Any
) -> None:
    paragraphs = [p for p in (command.help or "").split("\n\n")[1:] if p.strip()]
    parent = _help(path[:-1])
    own = " ".join(_help(path).split())
    for paragraph in paragraphs:
        words = " ".join(paragraph.split())
        assert words in own
        assert words not in " ".join(parent.split())
