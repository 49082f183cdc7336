"""Bytes of a page as text: byte-order marks, a declared charset, UTF-8 or the web's
default, and what lxml cannot take removed."""

from __future__ import annotations

import codecs
import re

_META_CHARSET = re.compile(rb"<meta[^>]{0,512}?charset\s*=\s*[\"']?\s*([a-z0-9._:-]{1,40})", re.I)
# Only real text encodings: a hostile page must not pick "punycode" or "unicode_escape".
_SAFE_CODEC = re.compile(r"^(utf|cp|iso8859|iso2022|latin|koi8|mac|gb|big5|euc|shift_jis|tis|hz)")
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]{0,500}>")
_NOT_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_CONTROL_CHARS = re.compile("[\x00-\x08\x0e-\x1f]")


def decode_markup(html: bytes | str) -> str:
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
