"""Turn an HTML page into what SKR stores: main text split along headings, images, links."""

from __future__ import annotations

import codecs
import logging
import re
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit

import trafilatura
from lxml import etree
from lxml import html as lxml_html

from skr.domain.models import ExtractedPage, ImageInfo

log = logging.getLogger(__name__)

MAX_IMAGES = 200
MAX_LINKS = 5000
_MAX_URL = 4096
_MAX_TITLE = 300
_MAX_HEADING = 200
_MAX_ATTR_TEXT = 500
_CONTEXT_CHARS = 300
_TINY_PX = 32
_MAX_WALK_DEPTH = 200
# trafilatura's search for the main text is quadratic in the elements of a page (libxml2's
# XPath over many text nodes: 100,000 paragraphs took 30 s, 30,000 spans in one paragraph
# 8 s), and its fallback (jusText) reads 1 MB of text in about a second. The largest real
# page seen (Flask's api.html) has 24,126 elements, 9,172 of them in paragraphs, and 230 kB
# of text. Past these limits a page's visible text is taken as it stands (linear).
_MAX_MAIN_TEXT_ELEMENTS = 40_000
_MAX_MAIN_TEXT_PARAGRAPH_ELEMENTS = 15_000
_MAX_MAIN_TEXT_CHARS = 1_500_000

_META_CHARSET = re.compile(rb"<meta[^>]{0,512}?charset\s*=\s*[\"']?\s*([a-z0-9._:-]{1,40})", re.I)
# Only real text encodings: a hostile page must not pick "punycode" or "unicode_escape".
_SAFE_CODEC = re.compile(r"^(utf|cp|iso8859|iso2022|latin|koi8|mac|gb|big5|euc|shift_jis|tis|hz)")
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]{0,500}>")
_NOT_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_CONTROL_CHARS = re.compile("[\x00-\x08\x0e-\x1f]")
_WHITESPACE = re.compile(r"\s+")
_URL_NOISE = re.compile(r"[\t\n\r]")
_HEADING_MARKS = re.compile(r"(?:\s*[¶§\u200b\ufeff]|\s+#)+$")
_PIXELS = re.compile(r"^\s*(\d{1,6})(?:\.\d*)?\s*(?:px)?\s*$", re.I)
_STYLE_PIXELS = re.compile(r"(?:^|;)\s*(?:width|height)\s*:\s*(\d{1,6})px", re.I)

_INLINE = frozenset({"hi", "ref", "lb", "del", "graphic", "span", "a", "b", "i", "em", "strong"})
_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object"})
# Never text a reader sees, wherever they stand (a script inside a caption or a heading
# was indexed with it): removed from the tree before anything reads it.
_NEVER_TEXT = ("script", "style", "template")
_BLOCK_NAMES = (
    "address article aside blockquote body br dd details div dl dt fieldset figcaption figure "
    "footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table td th tr ul"
)
_BLOCKS = frozenset(_BLOCK_NAMES.split())


@dataclass(frozen=True, slots=True)
class _Block:
    """One paragraph of main text, or a heading when ``level`` is 1..6."""

    text: str
    level: int = 0


@dataclass(frozen=True, slots=True)
class _TextStream:
    """The visible text of a subtree in document order, with where blocks and images sit."""

    text: str
    spans: dict[etree._Element, tuple[int, int]]
    positions: dict[etree._Element, int]


def extract_page(html: bytes | str, url: str) -> ExtractedPage:
    """Main text as heading sections, images with their context, and outgoing links.

    Never raises on malformed input: junk, empty or undecodable documents give a page with
    no text whose title is the URL.
    """
    root = _parse(_decode(html))
    if root is None:
        return ExtractedPage(title=url, text="", sections=[], images=[], links=[])
    etree.strip_elements(root, *_NEVER_TEXT, with_tail=False)
    _drop_huge_attributes(root)
    base = _base_url(root, url)
    links = _links(root, base, url)
    images = _images(root, base)
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


def _decode(html: bytes | str) -> str:
    """The document as text, or "" when it is binary rather than markup."""
    text = html if isinstance(html, str) else _decode_bytes(html)
    sample = text[:8192]
    if len(_CONTROL_CHARS.findall(sample)) > len(sample) // 50:
        return ""
    # lxml refuses str input that still declares an encoding
    return _NOT_XML_CHARS.sub("", _XML_DECLARATION.sub("", text, count=1))


def _decode_bytes(data: bytes) -> str:
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    declared = _declared_charset(data[:4096])
    if declared is not None:
        return data.decode(declared, errors="replace")
    text = data.decode("utf-8", errors="replace")
    broken = text.count("\ufffd")
    if not broken:
        return text
    # Valid multi-byte sequences are rare by chance, so a few of them mean UTF-8 with some
    # bad bytes; without them it is the web's default encoding.
    valid_multibyte = len(text) - len(text.encode("ascii", errors="ignore")) - broken
    return text if valid_multibyte * 4 >= broken else data.decode("cp1252", errors="replace")


def _declared_charset(head: bytes) -> str | None:
    match = _META_CHARSET.search(head)
    if match is None:
        return None
    try:
        name = codecs.lookup(match.group(1).decode("ascii")).name
    except LookupError:
        return None
    if not _SAFE_CODEC.match(name) or name == "utf-7":  # browsers may not decode UTF-7
        return None
    if name.startswith(("utf-16", "utf-32")):
        return "utf-8"  # as browsers do: a page that can declare it in ASCII is not UTF-16
    return "cp1252" if name in {"ascii", "iso8859-1"} else name


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


def _norm(text: str) -> str:
    return " ".join(text.split())


def _raw_text(element: etree._Element) -> str:
    return "".join(piece for piece in element.itertext() if isinstance(piece, str))


def _text_of(element: etree._Element) -> str:
    return _norm(_raw_text(element))


def _classes(element: etree._Element) -> list[str]:
    return (element.get("class") or "").split()


def _absolute(raw: str | None, base: str, *, keep_fragment: bool = True) -> str | None:
    if not raw:
        return None
    raw = _URL_NOISE.sub("", raw).strip()
    if not raw or len(raw) > _MAX_URL:
        return None
    try:
        url = urljoin(base, raw)
        scheme = urlsplit(url).scheme
    except ValueError:
        return None
    if scheme not in ("http", "https"):
        return None
    return url if keep_fragment else urldefrag(url).url


def _base_url(root: etree._Element, url: str) -> str:
    base = next(root.iter("base"), None)
    return (_absolute(base.get("href"), url) if base is not None else None) or url


def _links(root: etree._Element, base: str, page_url: str) -> list[str]:
    seen = {urldefrag(page_url).url}
    links: list[str] = []
    for anchor in root.iter("a"):
        href = anchor.get("href")
        if href is None or href.startswith("#"):
            continue  # most links of a docs page point into the page itself
        url = _absolute(href, base, keep_fragment=False)
        if url is not None and url not in seen:
            seen.add(url)
            links.append(url)
            if len(links) >= MAX_LINKS:
                break
    return links


def _title(root: etree._Element, blocks: list[_Block]) -> str:
    title = root.find("head/title")
    candidates = [_raw_text(title) if title is not None else ""]
    candidates += [
        m.get("content") or "" for m in root.iter("meta") if m.get("property") == "og:title"
    ]
    candidates += [block.text for block in blocks if block.level]
    return next((t for t in (_clipped(c, _MAX_TITLE) for c in candidates) if t), "")


def _clipped(text: str, limit: int) -> str:
    """``text`` normalised and cut to ``limit``, without splitting all of a huge text into
    words first (a 10 MB one made 2 million strings)."""
    return _norm(text[: limit * 8])[:limit]


# --- images -------------------------------------------------------------------------------


def _images(root: etree._Element, base: str) -> list[ImageInfo]:
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
    stream = _text_stream(body if body is not None else root, [img for img, _ in found])
    return [
        ImageInfo(
            src=src,
            alt=_norm(img.get("alt") or "")[:_MAX_ATTR_TEXT],
            title=_norm(img.get("title") or "")[:_MAX_ATTR_TEXT],
            caption=_caption(img),
            surrounding_text=_surrounding_text(img, stream),
        )
        for img, src in found
    ]


def _image_src(img: etree._Element, base: str) -> str | None:
    srcset = (img.get("srcset") or "").split(",")[0].split()
    for raw in (img.get("src"), img.get("data-src"), img.get("data-original"), *srcset[:1]):
        src = _absolute(raw, base)
        if src is not None:
            return src
    return None


def _is_tiny(img: etree._Element) -> bool:
    sizes = [_PIXELS.match(img.get(name) or "") for name in ("width", "height")]
    pixels = [int(m.group(1)) for m in sizes if m is not None]
    pixels += [int(v) for v in _STYLE_PIXELS.findall(img.get("style") or "")]
    return any(p <= _TINY_PX for p in pixels)


def _is_caption(element: etree._Element) -> bool:
    return element.tag == "figcaption" or "caption" in _classes(element)


def _caption(img: etree._Element) -> str:
    node = img.getparent()
    for _ in range(6):
        if node is None:
            return ""
        if node.tag == "figure" or (node.tag == "div" and "figure" in _classes(node)):
            caption = next((el for el in node.iter() if _is_caption(el)), None)
            text = _clipped(_raw_text(caption), _MAX_ATTR_TEXT * 2) if caption is not None else ""
            return _HEADING_MARKS.sub("", text)[:_MAX_ATTR_TEXT]
        node = node.getparent()
    return ""


def _surrounding_text(img: etree._Element, stream: _TextStream) -> str:
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
    before = _norm(text[max(start, position - _CONTEXT_CHARS) : position])
    after = _norm(text[position : min(end, position + _CONTEXT_CHARS)])
    keep_before = max(_CONTEXT_CHARS // 2, _CONTEXT_CHARS - len(after))
    if len(before) > keep_before:
        before = before[len(before) - keep_before :].partition(" ")[2]
    keep_after = _CONTEXT_CHARS - len(before)
    if len(after) > keep_after:
        after = after[:keep_after].rpartition(" ")[0]
    return f"{before} {after}".strip()


def _text_stream(root: etree._Element, images: list[etree._Element] | None) -> _TextStream:
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
        if tag in _SKIPPED or (images is not None and _is_caption(element)):
            continue
        if tag == "pre" and element not in ancestors:
            emit(_raw_text(element))
            continue
        emit(element.text or "")
        stack.extend((child, False) for child in reversed(element))
    return _TextStream("".join(parts), spans, positions)


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
    refused anyway), and huge ones cost: trafilatura's XPath took 6 s over one 10 MB
    ``class``, splitting a 10 MB ``alt`` into words 150 MB."""
    for element in root.iter():
        huge = [name for name, value in element.attrib.items() if len(value) > _MAX_URL]
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
        text = _raw_text(pre)
        for child in list(pre):
            pre.remove(child)
        pre.text = None
        etree.SubElement(pre, "span").text = text


def _walk(element: etree._Element, out: list[_Block], depth: int) -> None:
    tag = element.tag if isinstance(element.tag, str) else ""
    if tag == "head":
        text = _HEADING_MARKS.sub("", _clipped(_raw_text(element), _MAX_HEADING * 2))
        text = text[:_MAX_HEADING]
        rend = element.get("rend") or ""
        level = int(rend[1]) if re.fullmatch(r"h[1-6]", rend) else 3
        out.extend([_Block(text, level)] if text else [])
    elif tag == "code":
        lines = _raw_text(element).strip("\n").splitlines()
        _add(out, "\n".join(line.rstrip() for line in lines))
    elif tag == "table":
        rows = [[_text_of(cell) for cell in row if cell.tag == "cell"] for row in element]
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
        _add(out, _text_of(element))
    else:
        _walk_children(element, out, depth + 1)


def _walk_children(element: etree._Element, out: list[_Block], depth: int) -> None:
    """Runs of inline content become paragraphs; block children are walked on their own."""
    inline = [element.text or ""]
    for child in element:
        tag = child.tag if isinstance(child.tag, str) else ""
        is_code_block = tag == "code" and "\n" in _raw_text(child).strip()
        if tag in _INLINE or (tag == "code" and not is_code_block):
            inline += [_raw_text(child), child.tail or ""]
            continue
        _add(out, _norm("".join(inline)))
        _walk(child, out, depth)
        inline = [child.tail or ""]
    _add(out, _norm("".join(inline)))


def _add(out: list[_Block], text: str) -> None:
    text = text.removesuffix("¶").rstrip()  # Sphinx permalinks after API signatures
    if text:
        out.append(_Block(text))


def _fallback_blocks(root: etree._Element) -> list[_Block]:
    body = root.find("body")
    stream = _text_stream(body if body is not None else root, None)
    return [_Block(line) for line in map(_norm, stream.text.split("\n")) if line]


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
