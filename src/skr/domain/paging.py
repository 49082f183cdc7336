"""Opaque page cursors for listings: the position after which the next page starts."""

from __future__ import annotations

import re

from skr.domain.errors import InvalidInputError

_CURSOR = re.compile(r"[0-9]{1,18}")


def decode_cursor(cursor: str | None) -> int:
    """The position a cursor stands for (0 for none); ``InvalidInputError`` for anything
    this server did not give out (only ASCII digits: ``str.isdigit`` also accepts "²")."""
    if cursor is None or cursor == "":
        return 0
    if not _CURSOR.fullmatch(cursor):
        raise InvalidInputError("cursor is not one this server gave out")
    return int(cursor)
