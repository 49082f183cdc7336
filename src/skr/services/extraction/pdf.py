"""Turn a PDF into what SKR stores: its text page by page ("Page N" sections), title, links."""

from __future__ import annotations

import io
import logging
import re
import struct
import time
import zlib
from urllib.parse import urldefrag, urlsplit

from pypdf import PageObject, PasswordType, PdfReader, apply_configuration
from pypdf.errors import DependencyError as PdfDependencyError
from pypdf.errors import PyPdfError
from pypdf.generic import ArrayObject, DictionaryObject

from skr.domain.errors import FetchError
from skr.domain.models import ExtractedPage

log = logging.getLogger(__name__)

MAX_PAGES = 500
MAX_LINKS = 5000
_MAX_TITLE = 300
_MAX_URL = 4096
_MAX_TEXT_CHARS = 5_000_000
# pypdf reads content streams slowly, and its own limits let a small hostile file take
# far more time and memory than any real one. SKR's are tighter, still far past a real
# page (the figures: docs/benchmarks/history.md, "Figures that were in code comments").
_PYPDF_LIMITS: dict[str, int] = {
    "zlib_maximum_output_length": 16_000_000,
    "lzw_maximum_output_length": 16_000_000,
    "run_length_maximum_output_length": 16_000_000,
    "brotli_maximum_output_length": 16_000_000,
    "array_based_stream_maximum_output_length": 16_000_000,
    "stream_decoding_work_maximum_length": 64_000_000,
    "stream_parsing_work_maximum_count": 100_000,
}
# Whatever each page costs, a whole document is read for at most this long; the pages read
# by then are kept. Extraction runs in a thread nothing can interrupt.
MAX_SECONDS = 30.0
# What pypdf lets escape from damaged or hostile files besides its own errors; they are all
# turned into a FetchError (or, inside one page, into that page being left out).
_PDF_ERRORS = (
    PyPdfError,
    PdfDependencyError,
    ValueError,
    TypeError,
    AttributeError,
    LookupError,
    ArithmeticError,
    AssertionError,
    NotImplementedError,
    RecursionError,
    MemoryError,
    OSError,
    struct.error,
    zlib.error,
)
_LIGATURES = str.maketrans(
    {"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st", "\xad": ""}
)
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")
_HYPHENATED_BREAK = re.compile(r"(?<=[^\W\d_])-[ \t]*\n[ \t]*(?=[^\W\d_])")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\f\r]*\n\s*")


def extract_pdf(
    data: bytes, url: str, *, max_pages: int = MAX_PAGES, max_seconds: float = MAX_SECONDS
) -> ExtractedPage:
    """The text of each of the first ``max_pages`` pages as a ``Page N`` section, read for
    at most ``max_seconds``.

    Pages without text, or too large to read within SKR's limits, are left out. The title
    is the document's ``/Title``, else its first line of text. Links are the absolute
    http(s) URIs of its link annotations.

    Raises:
        FetchError: the PDF is broken, locked by a password, or has no text at all (a scan).
    """
    with apply_configuration(None, **_PYPDF_LIMITS):
        return _extract_pdf(data, url, max_pages, time.monotonic() + max_seconds)


def _extract_pdf(data: bytes, url: str, max_pages: int, deadline: float) -> ExtractedPage:
    reader = _open(data)
    sections: list[tuple[str, str]] = []
    links: list[str] = []
    seen = {urldefrag(url).url}
    first_line = ""
    size = 0
    unreadable: list[str] = []  # why the text of a page could not be read
    count = _page_count(reader)
    if count > max_pages:
        log.info("%s has %d pages; reading the first %d", url, count, max_pages)
    for index in range(min(count, max_pages)):
        if time.monotonic() > deadline:
            log.info("%s: reading stopped at page %d, out of time", url, index + 1)
            break
        page = _page(reader, index, url)
        if page is None:
            continue
        _add_links(page, links, seen)
        raw = _page_text(page, index, url, unreadable)
        text = normalize_pdf_text(raw)[: _MAX_TEXT_CHARS - size]
        if text:
            first_line = first_line or _first_line(raw)
            sections.append((f"Page {index + 1}", text))
            size += len(text)
            if size >= _MAX_TEXT_CHARS:
                log.info("%s: text cut at page %d (%d characters)", url, index + 1, size)
                break
    if not sections and unreadable:
        raise FetchError(f"the text of the PDF cannot be read ({unreadable[0]})")
    if not sections:
        raise FetchError("the PDF has no text layer (scanned?), so there is nothing to index")
    return ExtractedPage(
        title=_metadata_title(reader) or first_line or url,
        text="\n\n".join(text for _, text in sections),
        sections=sections,
        images=[],
        links=links,
    )


def normalize_pdf_text(text: str) -> str:
    """Hyphenated line breaks joined, whitespace collapsed, paragraph breaks kept."""
    text = _CONTROL_CHARS.sub("", text.translate(_LIGATURES)).replace("\r\n", "\n")
    text = _HYPHENATED_BREAK.sub("", text.replace("\r", "\n"))
    paragraphs = (" ".join(p.split()) for p in _PARAGRAPH_BREAK.split(text))
    return "\n\n".join(p for p in paragraphs if p)


def _open(data: bytes) -> PdfReader:
    if b"%PDF-" not in data[:1024]:  # where the header may be, by the standard
        raise FetchError("the file is not a PDF (it does not start with %PDF-)")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        locked = reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED
    except PdfDependencyError as exc:
        raise FetchError(f"the PDF is encrypted in a way SKR cannot read ({exc})") from exc
    except _PDF_ERRORS as exc:
        raise FetchError(f"the PDF is damaged and cannot be read ({_why(exc)})") from exc
    if locked:
        raise FetchError("the PDF is protected by a password")
    return reader


def _page_count(reader: PdfReader) -> int:
    try:
        return len(reader.pages)
    except _PDF_ERRORS as exc:
        raise FetchError(f"the PDF's page list is damaged ({_why(exc)})") from exc


def _page(reader: PdfReader, index: int, url: str) -> PageObject | None:
    try:
        return reader.pages[index]
    except _PDF_ERRORS as exc:
        log.info("%s: page %d cannot be read: %s", url, index + 1, _why(exc))
        return None


def _page_text(page: PageObject, index: int, url: str, unreadable: list[str]) -> str:
    try:
        raw = page.extract_text()
    except _PDF_ERRORS as exc:
        log.info("%s: the text of page %d cannot be read: %s", url, index + 1, _why(exc))
        unreadable.append(_why(exc))
        return ""
    return raw if isinstance(raw, str) else ""


def _add_links(page: PageObject, links: list[str], seen: set[str]) -> None:
    if len(links) >= MAX_LINKS:
        return
    try:
        annotations = page.get("/Annots")
        annotations = annotations.get_object() if annotations is not None else None
        if not isinstance(annotations, ArrayObject):
            return
        for reference in annotations:
            uri = _link_uri(reference.get_object())
            if uri is not None and uri not in seen:
                seen.add(uri)
                links.append(uri)
                if len(links) >= MAX_LINKS:
                    return
    except _PDF_ERRORS as exc:
        log.debug("skipping the links of a damaged page: %s", _why(exc))


def _link_uri(annotation: object) -> str | None:
    if not isinstance(annotation, DictionaryObject) or annotation.get("/Subtype") != "/Link":
        return None
    action = annotation.get("/A")
    action = action.get_object() if action is not None else None
    if not isinstance(action, DictionaryObject) or action.get("/S") != "/URI":
        return None
    raw = action.get("/URI")
    raw = raw.get_object() if raw is not None else None
    if isinstance(raw, bytes):
        raw = raw.decode("latin-1")
    if not isinstance(raw, str):
        return None
    uri = raw.strip()
    if not uri or len(uri) > _MAX_URL or any(c.isspace() for c in uri):
        return None
    parts = urlsplit(uri)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return urldefrag(uri).url


def _metadata_title(reader: PdfReader) -> str:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except _PDF_ERRORS as exc:
        log.debug("unreadable PDF metadata: %s", _why(exc))
        return ""
    if not isinstance(title, str):
        return ""
    return " ".join(_CONTROL_CHARS.sub("", title).split())[:_MAX_TITLE]


def _first_line(raw: str) -> str:
    lines = (" ".join(_CONTROL_CHARS.sub("", line).split()) for line in raw.splitlines())
    return next((line[:_MAX_TITLE] for line in lines if line), "")


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
