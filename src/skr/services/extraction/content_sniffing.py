"""Sniff whether fetched bytes are text at all, whatever their Content-Type claims."""

from __future__ import annotations

import codecs
import unicodedata

SNIFF_BYTES = 4096
"""How much of a body is looked at."""

MAX_SUSPICIOUS_SHARE = 0.05
"""The share of control, unassigned or undecodable characters above which a body is not
text. Real text has next to none; random or compressed bytes read as one in eight."""

# The byte-order marks browsers honour (WHATWG Encoding: UTF-8, UTF-16LE, UTF-16BE).
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_TEXT_CONTROLS = frozenset("\t\n\f\r")
# Control, unassigned, private-use and lone-surrogate characters.
_SUSPICIOUS_CATEGORIES = frozenset({"Cc", "Cn", "Co", "Cs"})


def looks_like_text(body: bytes) -> bool:
    """Whether ``body`` reads as text: UTF-8, UTF-16 with a byte-order mark, or a
    single-byte encoding such as Latin-1 or windows-1252.

    Only the first ``SNIFF_BYTES`` count. A NUL byte there (outside UTF-16) or more than
    ``MAX_SUSPICIOUS_SHARE`` of control or undecodable characters says it is binary. An
    empty body counts as text: there is nothing binary about it."""
    text = _decode(body[:SNIFF_BYTES], complete=len(body) <= SNIFF_BYTES)
    if text is None or "\0" in text:
        return False
    suspicious = sum(1 for char in text if _suspicious(char))
    return suspicious <= MAX_SUSPICIOUS_SHARE * len(text)


def _decode(sample: bytes, *, complete: bool) -> str | None:
    """``sample`` as text, or None when NUL bytes show it is no byte-oriented text."""
    for bom, encoding in _BOMS:
        if sample.startswith(bom):
            return _incremental(sample[len(bom) :], encoding, complete, errors="replace")
    if b"\0" in sample:
        return None
    try:
        return _incremental(sample, "utf-8", complete, errors="strict")
    except UnicodeDecodeError:
        # windows-1252 is what browsers read "latin-1" as; its five unassigned bytes come
        # out as U+FFFD and count as undecodable.
        return sample.decode("cp1252", errors="replace")


def _incremental(data: bytes, encoding: str, complete: bool, *, errors: str) -> str:
    # A sample cut from a longer body may end inside a character; that is no error.
    return codecs.getincrementaldecoder(encoding)(errors).decode(data, final=complete)


def _suspicious(char: str) -> bool:
    if char == "\ufffd":
        return True
    return char not in _TEXT_CONTROLS and unicodedata.category(char) in _SUSPICIOUS_CATEGORIES
