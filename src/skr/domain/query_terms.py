"""The words of a search query that keyword search matches on."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_TERMS = 64

# PostgreSQL's English stop words (its english.stop, the Snowball list): its tsvector search
# drops these itself, and SQLite's FTS5 drops the same, so both stores match the same
# words. They match nearly every chunk, so keeping them only costs time: without them FTS5
# scores far fewer rows, at the same quality on SciFact's train queries
# (docs/benchmarks.md, "How the defaults were chosen: train queries only").
STOP_WORDS = frozenset(
    """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his
    himself she her hers herself it its itself they them their theirs themselves what
    which who whom this that these those am is are was were be been being have has had
    having do does did doing a an the and but if or because as until while of at by for
    with about against between into through during before after above below to from up
    down in out on off over under again further then once here there when where why how
    all any both each few more most other some such no nor not only own same so than too
    very s t can will just don should now
    """.split()
)


def query_terms(text: str) -> list[str]:
    """Distinct lower-case words of ``text``, in order, at most ``MAX_QUERY_TERMS``; only
    word characters, so no query syntax of any engine can get through."""
    return list(dict.fromkeys(t.lower() for t in _WORD.findall(text)))[:MAX_QUERY_TERMS]


def keyword_terms(text: str) -> list[str]:
    """The :func:`query_terms` keyword search matches on: all but the stop words (a query
    of stop words only matches nothing, in either store; vector search still answers)."""
    return [t for t in query_terms(text) if t not in STOP_WORDS]
