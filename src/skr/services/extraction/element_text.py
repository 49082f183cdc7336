"""The text of parsed HTML: elements' text normalised and clipped, a page's visible text in
document order, and links made absolute."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit

from lxml import etree

MAX_URL = 4096
_URL_NOISE = re.compile(r"[\t\n\r]")
_WHITESPACE = re.compile(r"\s+")
HEADING_MARKS = re.compile(r"(?:\s*[¶§\u200b\ufeff]|\s+#)+$")
_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object"})
_BLOCK_NAMES = (
    "address article aside blockquote body br dd details div dl dt fieldset figcaption figure "
    "footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table td th tr ul"
)
_BLOCKS = frozenset(_BLOCK_NAMES.split())


@dataclass(frozen=True, slots=True)
class TextStream:
    """The visible text of a subtree in document order, with where blocks and images sit."""

    text: str
    spans: dict[etree._Element, tuple[int, int]]
    positions: dict[etree._Element, int]


def normalized(text: str) -> str:
    return " ".join(text.split())


def raw_text(element: etree._Element) -> str:
    return "".join(piece for piece in element.itertext() if isinstance(piece, str))


def text_of(element: etree._Element) -> str:
    return normalized(raw_text(element))


def classes(element: etree._Element) -> list[str]:
    return (element.get("class") or "").split()


def clipped(text: str, limit: int) -> str:
    """``text`` normalised and cut to ``limit``, without splitting all of a huge text into
    words first: one string per word, most of them thrown away
    (docs/benchmarks/history.md, "Figures that were in code comments")."""
    return normalized(text[: limit * 8])[:limit]


def is_caption(element: etree._Element) -> bool:
    return element.tag == "figcaption" or "caption" in classes(element)


def text_stream(root: etree._Element, images: list[etree._Element] | None) -> TextStream:
    """The text under ``root``; with ``images``, also where they and their blocks sit.

    Walks without recursion (hostile pages nest thousands deep) and reads ``<pre>`` in one
    go: highlighted code holds most of the elements of a docs page.
    """
    parts: list[str] = []
    starts: dict[etree._Element, int] = {}
    spans: dict[etree._Element, tuple[int, int]] = {}
    positions: dict[etree._Element, int] = {}
    ancestors = {a for img in images or [] for a in img.iterancestors()}
    size = 0

    def emit(piece: str, *, separator: bool = False) -> None:
        nonlocal size
        if piece:
            parts.append(piece if separator else _WHITESPACE.sub(" ", piece))
            size += len(parts[-1])

    stack: list[tuple[etree._Element, bool]] = [(root, False)]
    while stack:
        element, closing = stack.pop()
        tag = element.tag if isinstance(element.tag, str) else ""
        boundary = "\n" if tag in _BLOCKS else ""
        if closing:
            if element in starts:
                spans[element] = (starts.pop(element), size)
            emit(boundary, separator=True)
            emit(element.tail or "" if element is not root else "")
            continue
        emit(boundary, separator=True)
        if tag == "img" or element in ancestors:
            (positions if tag == "img" else starts)[element] = size
        stack.append((element, True))
        if tag in _SKIPPED or (images is not None and is_caption(element)):
            continue
        if tag == "pre" and element not in ancestors:
            emit(raw_text(element))
            continue
        emit(element.text or "")
        stack.extend((child, False) for child in reversed(element))
    return TextStream("".join(parts), spans, positions)


def absolute_url(raw: str | None, base: str, *, keep_fragment: bool = True) -> str | None:
    if not raw:
        return None
    raw = _URL_NOISE.sub("", raw).strip()
    if not raw or len(raw) > MAX_URL:
        return None
    try:
        url = urljoin(base, raw)
        scheme = urlsplit(url).scheme
    except ValueError:
        return None
    if scheme not in ("http", "https"):
        return None
    return url if keep_fragment else urldefrag(url).url
