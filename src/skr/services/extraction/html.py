"""Turn an HTML page into what SKR stores: main text split along headings, images, links."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import urldefrag

import trafilatura
from lxml import etree
from lxml import html as lxml_html

from skr.domain.models import ExtractedPage
from skr.services.extraction.decoding import decode_markup
from skr.services.extraction.element_text import (
    HEADING_MARKS,
    MAX_URL,
    absolute_url,
    clipped,
    normalized,
    raw_text,
    text_of,
    text_stream,
)
from skr.services.extraction.html_images import images_with_context

log = logging.getLogger(__name__)

MAX_LINKS = 5000
_MAX_TITLE = 300
_MAX_HEADING = 200
_MAX_WALK_DEPTH = 200
# trafilatura's search for the main text is quadratic in the elements of a page (libxml2's
# XPath over many text nodes), and its fallback (jusText) is slow per byte of text. These
# limits sit far above the largest real page seen (Flask's api.html); past them a page's
# visible text is taken as it stands (linear). The timings and api.html's size:
# docs/benchmarks/history.md, "Figures that were in code comments".
_MAX_MAIN_TEXT_ELEMENTS = 40_000
_MAX_MAIN_TEXT_PARAGRAPH_ELEMENTS = 15_000
_MAX_MAIN_TEXT_CHARS = 1_500_000
_INLINE = frozenset({"hi", "ref", "lb", "del", "graphic", "span", "a", "b", "i", "em", "strong"})
# Never text a reader sees, wherever they stand (a script inside a caption or a heading
# was indexed with it): removed from the tree before anything reads it.
_NEVER_TEXT = ("script", "style", "template")


@dataclass(frozen=True, slots=True)
class _Block:
    """One paragraph of main text, or a heading when ``level`` is 1..6."""

    text: str
    level: int = 0


def extract_page(html: bytes | str, url: str) -> ExtractedPage:
    """Main text as heading sections, images with their context, and outgoing links.

    Never raises on malformed input: junk, empty or undecodable documents give a page with
    no text whose title is the URL.
    """
    root = _parse(decode_markup(html))
    if root is None:
        return ExtractedPage(title=url, text="", sections=[], images=[], links=[])
    etree.strip_elements(root, *_NEVER_TEXT, with_tail=False)
    _drop_huge_attributes(root)
    base = _base_url(root, url)
    links = _links(root, base, url)
    images = images_with_context(root, base)
    blocks = _main_blocks(root, url) or _fallback_blocks(root)
    return ExtractedPage(
        title=_title(root, blocks) or url,
        text="\n\n".join(block.text for block in blocks),
        sections=_sections(blocks),
        images=images,
        links=links,
        canonical=_canonical_href(root),
    )


def _canonical_href(root: etree._Element) -> str | None:
    for link in root.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        href = (link.get("href") or "").strip()
        if "canonical" in rel and href:
            return href
    return None


def _parse(text: str) -> etree._Element | None:
    if not text.strip():
        return None
    parser = lxml_html.HTMLParser(
        remove_comments=True, remove_pis=True, collect_ids=False, no_network=True
    )
    try:
        return lxml_html.document_fromstring(text, parser=parser)
    except (etree.LxmlError, ValueError):
        return None


def _base_url(root: etree._Element, url: str) -> str:
    base = next(root.iter("base"), None)
    return (absolute_url(base.get("href"), url) if base is not None else None) or url


def _links(root: etree._Element, base: str, page_url: str) -> list[str]:
    seen = {urldefrag(page_url).url}
    links: list[str] = []
    for anchor in root.iter("a"):
        href = anchor.get("href")
        if href is None or href.startswith("#"):
            continue  # most links of a docs page point into the page itself
        url = absolute_url(href, base, keep_fragment=False)
        if url is not None and url not in seen:
            seen.add(url)
            links.append(url)
            if len(links) >= MAX_LINKS:
                break
    return links


def _title(root: etree._Element, blocks: list[_Block]) -> str:
    title = root.find("head/title")
    candidates = [raw_text(title) if title is not None else ""]
    candidates += [
        m.get("content") or "" for m in root.iter("meta") if m.get("property") == "og:title"
    ]
    candidates += [block.text for block in blocks if block.level]
    return next((t for t in (clipped(c, _MAX_TITLE) for c in candidates) if t), "")


# --- main text ----------------------------------------------------------------------------


def _main_blocks(root: etree._Element, url: str) -> list[_Block]:
    _flatten_preformatted(root)
    if _too_large_for_trafilatura(root):
        log.info("%s is too large to look for its main text; using all its visible text", url)
        return []
    try:
        document = trafilatura.bare_extraction(
            root,
            url=url,
            output_format="xml",
            favor_recall=True,
            include_comments=False,
            include_tables=True,
            include_images=False,
            include_links=False,
            include_formatting=True,
            with_metadata=False,
        )
    except (ValueError, TypeError, RecursionError, etree.LxmlError) as exc:
        log.warning("trafilatura could not read %s, using the visible text: %s", url, exc)
        return []
    body = getattr(document, "body", None)
    if not isinstance(body, etree._Element):
        return []
    for line_break in body.iter("lb"):
        line_break.tail = "\n" + (line_break.tail or "")
    blocks: list[_Block] = []
    _walk(body, blocks, 0)
    return blocks


def _drop_huge_attributes(root: etree._Element) -> None:
    """No attribute longer than a URL may be is of use (longer ``href`` and ``src`` are
    refused anyway), and huge ones cost: trafilatura's XPath slows over a huge ``class``
    and splitting a huge ``alt`` into words takes memory in proportion
    (docs/benchmarks/history.md, "Figures that were in code comments")."""
    for element in root.iter():
        huge = [name for name, value in element.attrib.items() if len(value) > MAX_URL]
        for name in huge:
            del element.attrib[name]


def _too_large_for_trafilatura(root: etree._Element) -> bool:
    elements = sum(1 for _ in root.iter())
    if elements > _MAX_MAIN_TEXT_ELEMENTS:
        return True
    in_paragraphs = sum(1 for paragraph in root.iter("p") for _ in paragraph.iter())
    if in_paragraphs > _MAX_MAIN_TEXT_PARAGRAPH_ELEMENTS:
        return True
    return sum(len(text) for text in root.itertext()) > _MAX_MAIN_TEXT_CHARS


def _flatten_preformatted(root: etree._Element) -> None:
    """Give every ``<pre>`` one ``<span>`` child so trafilatura keeps it as a code block.

    Otherwise highlighted code inside list items (Sphinx API entries) comes out as a quote
    with its line breaks collapsed.
    """
    for pre in list(root.iter("pre")):
        for line_break in pre.iter("br"):
            line_break.tail = "\n" + (line_break.tail or "")
        text = raw_text(pre)
        for child in list(pre):
            pre.remove(child)
        pre.text = None
        etree.SubElement(pre, "span").text = text


def _walk(element: etree._Element, out: list[_Block], depth: int) -> None:
    tag = element.tag if isinstance(element.tag, str) else ""
    if tag == "head":
        text = HEADING_MARKS.sub("", clipped(raw_text(element), _MAX_HEADING * 2))
        text = text[:_MAX_HEADING]
        rend = element.get("rend") or ""
        level = int(rend[1]) if re.fullmatch(r"h[1-6]", rend) else 3
        out.extend([_Block(text, level)] if text else [])
    elif tag == "code":
        lines = raw_text(element).strip("\n").splitlines()
        _add(out, "\n".join(line.rstrip() for line in lines))
    elif tag == "table":
        rows = [[text_of(cell) for cell in row if cell.tag == "cell"] for row in element]
        _add(out, "\n".join(" | ".join(c for c in cells if c) for cells in rows).strip())
    elif tag == "list":
        kind = element.get("rend")
        for number, item in enumerate(element, start=1):
            marker = "- " if kind == "ul" else f"{number}. " if kind == "ol" else ""
            first = len(out)
            _walk_children(item, out, depth + 1)
            if marker and len(out) > first and not out[first].level and "\n" not in out[first].text:
                out[first] = _Block(marker + out[first].text)
    elif tag == "p" or depth > _MAX_WALK_DEPTH:
        _add(out, text_of(element))
    else:
        _walk_children(element, out, depth + 1)


def _walk_children(element: etree._Element, out: list[_Block], depth: int) -> None:
    """Runs of inline content become paragraphs; block children are walked on their own."""
    inline = [element.text or ""]
    for child in element:
        tag = child.tag if isinstance(child.tag, str) else ""
        is_code_block = tag == "code" and "\n" in raw_text(child).strip()
        if tag in _INLINE or (tag == "code" and not is_code_block):
            inline += [raw_text(child), child.tail or ""]
            continue
        _add(out, normalized("".join(inline)))
        _walk(child, out, depth)
        inline = [child.tail or ""]
    _add(out, normalized("".join(inline)))


def _add(out: list[_Block], text: str) -> None:
    text = text.removesuffix("¶").rstrip()  # Sphinx permalinks after API signatures
    if text:
        out.append(_Block(text))


def _fallback_blocks(root: etree._Element) -> list[_Block]:
    body = root.find("body")
    stream = text_stream(body if body is not None else root, None)
    return [_Block(line) for line in map(normalized, stream.text.split("\n")) if line]


def _sections(blocks: list[_Block]) -> list[tuple[str, str]]:
    sections: list[tuple[str, str]] = []
    headings: list[_Block] = []
    paragraphs: list[str] = []
    for block in [*blocks, _Block("", 1)]:  # the sentinel heading flushes the last section
        if not block.level:
            paragraphs.append(block.text)
            continue
        if paragraphs:
            path = " > ".join(heading.text for heading in headings)
            sections.append((path, "\n\n".join(paragraphs)))
            paragraphs = []
        while headings and headings[-1].level >= block.level:
            headings.pop()
        headings.append(block)
    return sections
