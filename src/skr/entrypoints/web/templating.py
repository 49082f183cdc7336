"""The page's Jinja2 environment and the filters that keep scraped text inert."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from urllib.parse import urlsplit

import jinja2
from markupsafe import Markup, escape

from skr.domain.query_terms import query_terms

# Words too common to be worth marking in a result.
_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i in is it of on or the this to what "
    "when where which who why with you".split()
)
_SUFFIXES = ("ing", "es", "ed", "ly", "s")
_ANSWER_MARK = re.compile(r"\[(\d{1,3})\]")
SNIPPET_CHARS = 360


def safe_url(url: object) -> str | None:
    """``url`` when it is an absolute http(s) URL with a host, else None: a link or an image
    source on the page is never ``javascript:``, ``data:``, ``vbscript:``, relative or odd."""
    if not isinstance(url, str) or len(url) > 4096:
        return None
    candidate = url.strip()
    if any(ord(ch) < 0x21 or ch in "\\\x7f" for ch in candidate):
        return None  # browsers drop tabs and newlines in schemes: "java\tscript:" is a trap
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        return None
    return candidate


def _stem(term: str) -> str:
    for suffix in _SUFFIXES:
        if term.endswith(suffix) and len(term) - len(suffix) >= 3:
            return term[: -len(suffix)]
    return term


def highlight_pattern(query: str) -> re.Pattern[str] | None:
    """Whole words beginning with a query word's stem ("register" marks "registered")."""
    stems = {_stem(t) for t in query_terms(query) if len(t) > 1 and t not in _STOPWORDS}
    if not stems:
        return None
    alternatives = "|".join(re.escape(s) for s in sorted(stems, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})\w*", re.IGNORECASE | re.UNICODE)


def highlight(text: str, query: str) -> Markup:
    """``text`` escaped, with the words matching ``query`` wrapped in ``<mark>``. The text
    is cut at the matches first and every piece escaped on its own, so a match can never
    fall inside an entity (``&amp;``) or let markup through."""
    pattern = highlight_pattern(query)
    if pattern is None:
        return escape(text)
    pieces: list[str] = []
    last = 0
    for match in pattern.finditer(text):
        pieces.append(str(escape(text[last : match.start()])))
        pieces.append(f"<mark>{escape(match.group(0))}</mark>")
        last = match.end()
    pieces.append(str(escape(text[last:])))
    return Markup("".join(pieces))  # noqa: S704 -- every piece above is escaped


def snippet(text: str, query: str, chars: int = SNIPPET_CHARS) -> str:
    """At most about ``chars`` of ``text``, starting a little before the first match."""
    text = " ".join(text.split())
    if len(text) <= chars:
        return text
    pattern = highlight_pattern(query)
    found = pattern.search(text) if pattern is not None else None
    start = 0
    if found is not None and found.start() > chars // 4:
        start = found.start() - chars // 4
        space = text.find(" ", start, found.start())
        start = space + 1 if space != -1 else start
    end = min(len(text), start + chars)
    cut = text[start:end]
    if end < len(text):
        cut = cut.rsplit(" ", 1)[0] + " …"
    return ("… " if start > 0 else "") + cut


def answer_parts(answer: str, numbers: Collection[int]) -> list[tuple[str, int | None]]:
    """The answer as text pieces and citation marks: ``[2]`` becomes ``("[2]", 2)`` when
    citation 2 exists, so the page can link it; anything else stays text."""
    parts: list[tuple[str, int | None]] = []
    last = 0
    for match in _ANSWER_MARK.finditer(answer):
        n = int(match.group(1))
        if n not in numbers:
            continue
        parts.append((answer[last : match.start()], None))
        parts.append((match.group(0), n))
        last = match.end()
    parts.append((answer[last:], None))
    return [(text, n) for text, n in parts if text]


def first_line(text: str) -> str:
    """An image hit's first line: its alt text, title or caption (whichever it has)."""
    return text.strip().split("\n", 1)[0]


def other_lines(text: str) -> str:
    """Everything after the first line: what else is known about an image."""
    parts = text.strip().split("\n", 1)
    return parts[1] if len(parts) > 1 else ""


def when(value: datetime | None) -> str:
    """A timestamp as people read it, in UTC."""
    if value is None:
        return ""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float | None) -> str:
    """Seconds as "2 min 5 s"; empty when unknown."""
    if seconds is None:
        return ""
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def rate(pages_per_second: float | None) -> str:
    return "" if pages_per_second is None else f"{pages_per_second:.2f} pages/s"


def build_environment() -> jinja2.Environment:
    """Templates from the package, autoescaped, and strict about undefined names."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("skr.entrypoints.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        safe_url=safe_url,
        highlight=highlight,
        snippet=snippet,
        first_line=first_line,
        other_lines=other_lines,
        when=when,
        duration=duration,
        rate=rate,
    )
    environment.globals["answer_parts"] = answer_parts
    return environment
