"""The words of a search query that keyword search matches on."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_TERMS = 64


def query_terms(text: str) -> list[str]:
    """Distinct lower-case words of ``text``, in order, at most ``MAX_QUERY_TERMS``; only
    word characters, so no query syntax of any engine can get through."""
    return list(dict.fromkeys(t.lower() for t in _WORD.findall(text)))[:MAX_QUERY_TERMS]
