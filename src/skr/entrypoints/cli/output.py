"""Where the commands print: results to standard output, progress and errors to standard
error, and the one way a command fails."""

from __future__ import annotations

from functools import cache
from typing import NoReturn

import typer
from rich.console import Console


@cache
def out() -> Console:
    """Standard output's console, made on first use (nothing at import time)."""
    return Console()


@cache
def err() -> Console:
    """Standard error's console, made on first use."""
    return Console(stderr=True)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on standard error and end the command with exit code 1."""
    err().print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)
