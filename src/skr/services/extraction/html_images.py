"""The images of an HTML page, each with its alt text, caption and the text around it."""

from __future__ import annotations

import re

from lxml import etree

from skr.domain.models import ImageInfo
from skr.services.extraction.element_text import (
    HEADING_MARKS,
    TextStream,
    absolute_url,
    classes,
    clipped,
    is_caption,
    normalized,
    raw_text,
    text_stream,
)

MAX_IMAGES = 200
_MAX_ATTR_TEXT = 500
_CONTEXT_CHARS = 300
_TINY_PX = 32
_PIXELS = re.compile(r"^\s*(\d{1,6})(?:\.\d*)?\s*(?:px)?\s*$", re.I)
_STYLE_PIXELS = re.compile(r"(?:^|;)\s*(?:width|height)\s*:\s*(\d{1,6})px", re.I)


def images_with_context(root: etree._Element, base: str) -> list[ImageInfo]:
    found: list[tuple[etree._Element, str]] = []
    seen: set[str] = set()
    for img in root.iter("img"):
        src = _image_src(img, base)
        if src is None or src in seen or _is_tiny(img):
            continue
        seen.add(src)
        found.append((img, src))
        if len(found) >= MAX_IMAGES:
            break
    if not found:
        return []
    body = root.find("body")
    stream = text_stream(body if body is not None else root, [img for img, _ in found])
    return [
        ImageInfo(
            src=src,
            alt=normalized(img.get("alt") or "")[:_MAX_ATTR_TEXT],
            title=normalized(img.get("title") or "")[:_MAX_ATTR_TEXT],
            caption=_caption(img),
            surrounding_text=_surrounding_text(img, stream),
        )
        for img, src in found
    ]


def _image_src(img: etree._Element, base: str) -> str | None:
    srcset = (img.get("srcset") or "").split(",")[0].split()
    for raw in (img.get("src"), img.get("data-src"), img.get("data-original"), *srcset[:1]):
        src = absolute_url(raw, base)
        if src is not None:
            return src
    return None


def _is_tiny(img: etree._Element) -> bool:
    sizes = [_PIXELS.match(img.get(name) or "") for name in ("width", "height")]
    pixels = [int(m.group(1)) for m in sizes if m is not None]
    pixels += [int(v) for v in _STYLE_PIXELS.findall(img.get("style") or "")]
    return any(p <= _TINY_PX for p in pixels)


def _caption(img: etree._Element) -> str:
    node = img.getparent()
    for _ in range(6):
        if node is None:
            return ""
        if node.tag == "figure" or (node.tag == "div" and "figure" in classes(node)):
            caption = next((el for el in node.iter() if is_caption(el)), None)
            text = clipped(raw_text(caption), _MAX_ATTR_TEXT * 2) if caption is not None else ""
            return HEADING_MARKS.sub("", text)[:_MAX_ATTR_TEXT]
        node = node.getparent()
    return ""


def _surrounding_text(img: etree._Element, stream: TextStream) -> str:
    position = stream.positions.get(img)
    node = img.getparent()
    while position is not None and node is not None:
        span = stream.spans.get(node)
        window = _window(stream.text, span, position) if span is not None else ""
        if window:
            return window
        node = node.getparent()
    return ""


def _window(text: str, span: tuple[int, int], position: int) -> str:
    """About ``_CONTEXT_CHARS`` of text around ``position``, inside ``span``, on word edges."""
    start, end = span
    before = normalized(text[max(start, position - _CONTEXT_CHARS) : position])
    after = normalized(text[position : min(end, position + _CONTEXT_CHARS)])
    keep_before = max(_CONTEXT_CHARS // 2, _CONTEXT_CHARS - len(after))
    if len(before) > keep_before:
        before = before[len(before) - keep_before :].partition(" ")[2]
    keep_after = _CONTEXT_CHARS - len(before)
    if len(after) > keep_after:
        after = after[:keep_after].rpartition(" ")[0]
    return f"{before} {after}".strip()
