"""Read a sitemap (XML urlset or index, gzip, plain text) into page URLs and lastmod times."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from skr.domain.errors import FetchError

__all__ = [
    "MAX_SITEMAP_BYTES",
    "MAX_SITEMAP_ENTRIES",
    "SitemapDocument",
    "SitemapEntry",
    "parse_lastmod",
    "parse_sitemap",
]

MAX_SITEMAP_BYTES = 50 * 1024 * 1024  # sitemaps.org: 50 MiB uncompressed
MAX_SITEMAP_ENTRIES = 50_000  # sitemaps.org: 50,000 URLs per file
_MAX_LOC_CHARS = 4096
_MAX_LASTMOD_CHARS = 64
_FEED_CHUNK = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_ENTRY_NAME_BY_ROOT = {"urlset": "url", "sitemapindex": "sitemap"}
# Entities stay unexpanded (no XXE, no billion laughs), nothing is fetched, and libxml2 keeps
# its default depth and text-size limits; recover=True reads past small breakages.
_SAFE_XML_OPTIONS: dict[str, Any] = {
    "resolve_entities": False,
    "no_network": True,
    "huge_tree": False,
    "load_dtd": False,
    "dtd_validation": False,
    "recover": True,
    "remove_comments": True,
    "remove_pis": True,
}
# Sitemap generators often forget to escape "&" in query strings, and libxml2's recovery would
# silently drop "&name" from the URL; escaping bare ampersands (outside CDATA) keeps it whole.
_CDATA_OR_BARE_AMPERSAND = re.compile(
    rb"<!\[CDATA\[|\]\]>|&(?!(?:[A-Za-z_:][\w.:-]{0,100}|#[0-9]{1,10}|#x[0-9A-Fa-f]{1,8});)"
)
_NOT_IN_URL = re.compile(r"[\s\x00-\x1f\x7f]")
_LINE = re.compile(rb"[^\r\n]+")
_PLAIN_WEB_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:[/?#]|$)", re.IGNORECASE)
_W3C_DATETIME = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:[Tt ](?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,12}))?)?"
    r"\s*(?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?)?)?)?)?"
)


@dataclass(frozen=True, slots=True)
class SitemapEntry:
    """One ``<loc>`` of a sitemap; ``lastmod`` is timezone-aware (UTC) or None."""

    loc: str
    lastmod: datetime | None = None


@dataclass(frozen=True, slots=True)
class SitemapDocument:
    """Page URLs of a urlset (or text sitemap), or child sitemaps of a sitemap index."""

    urls: list[SitemapEntry] = field(default_factory=list)
    sitemaps: list[SitemapEntry] = field(default_factory=list)


def parse_sitemap(
    body: bytes,
    *,
    max_entries: int = MAX_SITEMAP_ENTRIES,
    max_bytes: int = MAX_SITEMAP_BYTES,
) -> SitemapDocument:
    """Parse a sitemap body; unreadable input gives an empty document.

    Raises FetchError when the body, after gunzipping, is larger than ``max_bytes``.
    """
    data = _gunzip(body, max_bytes) if body.startswith(_GZIP_MAGIC) else body
    if len(data) > max_bytes:
        raise FetchError(f"sitemap is larger than {_size_label(max_bytes)}")
    if max_entries <= 0:
        return SitemapDocument()
    if _looks_like_xml(data):
        return _parse_xml(data, max_entries)
    return SitemapDocument(urls=_parse_text(data, max_entries))


def parse_lastmod(text: str | None) -> datetime | None:
    """A W3C datetime (``2024``, ``2024-05-01``, ``2024-05-01T10:20:30.5+02:00``...) in UTC.

    A time without a zone is taken as UTC; anything unparsable gives None.
    """
    if text is None:
        return None
    text = text.strip()
    match = _W3C_DATETIME.fullmatch(text) if len(text) <= _MAX_LASTMOD_CHARS else None
    if match is None:
        return None
    parts = match.groupdict()
    fraction = (parts["fraction"] or "")[:6].ljust(6, "0")
    try:
        moment = datetime(
            int(parts["year"]),
            int(parts["month"] or 1),
            int(parts["day"] or 1),
            int(parts["hour"] or 0),
            int(parts["minute"] or 0),
            int(parts["second"] or 0),
            int(fraction),
            tzinfo=_zone(parts["tz"]),
        )
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _zone(designator: str | None) -> timezone:
    if designator is None or designator in ("Z", "z"):
        return UTC
    digits = designator[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if minutes >= 60:
        raise ValueError("offset minutes out of range")
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if designator[0] == "-" else offset)


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    """Inflate every gzip member, stopping one byte past ``max_bytes`` (a gzip bomb)."""
    out = bytearray()
    data = body
    while data.startswith(_GZIP_MAGIC):
        inflater = zlib.decompressobj(_GZIP_WBITS)
        try:
            while data and not inflater.eof:
                # max_length is never 0 here, which zlib would read as "no limit".
                out += inflater.decompress(data, max_bytes + 1 - len(out))
                if len(out) > max_bytes:
                    raise FetchError(f"sitemap is larger than {_size_label(max_bytes)} unzipped")
                data = inflater.unconsumed_tail
        except zlib.error:
            break  # corrupt: parse what was inflated before it (often nothing)
        if not inflater.eof:
            break  # truncated: parse what arrived
        data = inflater.unused_data
    return bytes(out)


def _size_label(size: int) -> str:
    mib = 1024 * 1024
    return f"{size // mib} MiB" if size % mib == 0 else f"{size} bytes"


def _looks_like_xml(data: bytes) -> bool:
    if data.startswith(_UTF16_BOMS):
        return True
    return data.removeprefix(_UTF8_BOM).lstrip().startswith(b"<")


def _is_web_url(loc: str) -> bool:
    if not loc or len(loc) > _MAX_LOC_CHARS or _NOT_IN_URL.search(loc):
        return False
    if _PLAIN_WEB_URL.match(loc):
        return True  # the usual case, without urlsplit's cost (50,000 times per sitemap)
    try:
        parts = urlsplit(loc)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host)


class _EntryCollector:
    """Keeps http(s) locs once each, in document order, up to ``limit`` entries."""

    def __init__(self, limit: int) -> None:
        self.entries: list[SitemapEntry] = []
        self._seen: set[str] = set()
        self._limit = limit

    @property
    def full(self) -> bool:
        return len(self.entries) >= self._limit

    def add(self, loc: str | None, lastmod: str | None = None) -> None:
        loc = (loc or "").strip()
        if self.full or loc in self._seen or not _is_web_url(loc):
            return
        self._seen.add(loc)
        self.entries.append(SitemapEntry(loc=loc, lastmod=parse_lastmod(lastmod)))


def _parse_text(data: bytes, max_entries: int) -> list[SitemapEntry]:
    """Line by line as it goes: splitting all of a large text sitemap at once holds a
    string per line, though only the first ``max_entries`` are kept
    (docs/benchmarks/history.md, "Figures that were in code comments")."""
    collector = _EntryCollector(max_entries)
    for line in _LINE.finditer(data.removeprefix(_UTF8_BOM)):
        collector.add(line[0].decode("utf-8", errors="replace"))
        if collector.full:
            break
    return collector.entries


def _parse_xml(data: bytes, max_entries: int) -> SitemapDocument:
    parser = etree.XMLPullParser(events=("start", "end"), **_SAFE_XML_OPTIONS)
    reader = _XmlSitemapReader(max_entries)
    try:
        for chunk in _xml_chunks(data):
            parser.feed(chunk)
            if not reader.consume(parser.read_events()):
                return reader.document()  # enough entries: the rest is never parsed
        parser.close()
    except etree.XMLSyntaxError:
        pass  # even recover=True gives up on some input; keep the entries read so far
    reader.consume(parser.read_events())
    return reader.document()


def _xml_chunks(data: bytes) -> Iterator[bytes]:
    """Feed-sized pieces, cut before a "<" where possible, with bare ampersands escaped."""
    # "&name;" and "]]>" hold no "<", so cutting before one never splits what escaping reads.
    escape = b"\x00" not in data[:64]  # ASCII-compatible encoding, not UTF-16 or UTF-32
    in_cdata = False
    start = 0
    while start < len(data):
        end = start + _FEED_CHUNK
        if end < len(data):
            cut = data.rfind(b"<", start + 1, end)
            end = cut if cut > 0 else end
        chunk = data[start:end]
        if escape:
            chunk, in_cdata = _escape_bare_ampersands(chunk, in_cdata)
        yield chunk
        start = end


def _escape_bare_ampersands(chunk: bytes, in_cdata: bool) -> tuple[bytes, bool]:
    pieces: list[bytes] = []
    start = 0
    for match in _CDATA_OR_BARE_AMPERSAND.finditer(chunk):
        token = match[0]
        if token == b"<![CDATA[":
            in_cdata = True
        elif token == b"]]>":
            in_cdata = False
        elif not in_cdata:
            pieces += (chunk[start : match.start()], b"&amp;")
            start = match.end()
    if not pieces:
        return chunk, in_cdata
    pieces.append(chunk[start:])
    return b"".join(pieces), in_cdata


class _XmlSitemapReader:
    """Turns pull-parser events into entries, dropping each subtree once it has been read."""

    def __init__(self, max_entries: int) -> None:
        self._collector = _EntryCollector(max_entries)
        self._entry_name = ""  # "url" or "sitemap", set by the root element
        self._namespaces: tuple[str | None, ...] = (None,)
        self._depth = 0
        self._in_entry = False
        self._loc: str | None = None
        self._lastmod: str | None = None
        self._stopped = False

    def document(self) -> SitemapDocument:
        if self._entry_name == "sitemap":
            return SitemapDocument(sitemaps=self._collector.entries)
        return SitemapDocument(urls=self._collector.entries)

    def consume(self, events: Iterable[tuple[str, Any]]) -> bool:
        """Handle events; False once the rest of the document is not needed."""
        for event, element in events:
            if self._stopped:
                break
            if event == "start":
                self._start(element)
            elif event == "end":
                self._end(element)
        return not self._stopped

    def _start(self, element: etree._Element) -> None:
        self._depth += 1
        namespace, name = _split_tag(element.tag)
        if self._depth == 1:
            # Any namespace (sitemaps.org 0.9, Google's old 0.84, none); children may omit it.
            self._entry_name = _ENTRY_NAME_BY_ROOT.get(name, "")
            self._namespaces = (namespace, None)
            self._stopped = not self._entry_name
        elif self._depth == 2:
            self._in_entry = name == self._entry_name and namespace in self._namespaces
            self._loc = self._lastmod = None

    def _end(self, element: etree._Element) -> None:
        level = self._depth
        self._depth -= 1
        if level == 3 and self._in_entry:
            self._read_field(element)
        elif level == 2 and self._in_entry:
            self._collector.add(self._loc, self._lastmod)
            self._stopped = self._collector.full
        if level > 1:
            _discard(element)

    def _read_field(self, element: etree._Element) -> None:
        namespace, name = _split_tag(element.tag)
        if namespace not in self._namespaces:
            return  # e.g. <image:loc> of the image extension
        if name == "loc" and self._loc is None:
            # A child node here is an unexpanded entity or stray markup: not a usable URL.
            self._loc = "" if len(element) else (element.text or "")
        elif name == "lastmod" and self._lastmod is None:
            self._lastmod = element.text or ""


def _split_tag(tag: object) -> tuple[str | None, str]:
    if not isinstance(tag, str):
        return None, ""
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local.lower()
    return None, tag.lower()


def _discard(element: etree._Element) -> None:
    """Free an element already read, and its earlier siblings, to keep memory flat."""
    element.clear()
    parent = element.getparent()
    if parent is None:
        return
    while element.getprevious() is not None:
        del parent[0]
