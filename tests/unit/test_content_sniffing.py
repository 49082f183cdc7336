"""looks_like_text: text in the encodings the web uses passes, binary under any label does not."""

from __future__ import annotations

import codecs
import gzip
import random

import pytest

from skr.services.extraction.content_sniffing import SNIFF_BYTES, looks_like_text

HTML = (
    "<!doctype html><html><head><title>Crème brûlée — “recipes”</title></head>"
    "<body><p>Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.</p>"
    "<p>Съешь же ещё этих мягких французских булок. 日本語のテキスト。 😀</p>\n\t</body></html>"
)
FRENCH = "<p>Voilà l'été : déjà où ça ? Garçon, un café crème et une crêpe s'il vous plaît.</p>"


def _random_bytes(size: int, *, seed: int = 7, without_nul: bool = False) -> bytes:
    data = random.Random(seed).randbytes(size)
    return data.replace(b"\0", b"\x01") if without_nul else data


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html><body><p>plain ASCII</p></body></html>", id="ascii"),
        pytest.param(HTML.encode("utf-8"), id="utf-8"),
        pytest.param(codecs.BOM_UTF8 + HTML.encode("utf-8"), id="utf-8 with BOM"),
        pytest.param(codecs.BOM_UTF16_LE + HTML.encode("utf-16-le"), id="utf-16-le with BOM"),
        pytest.param(codecs.BOM_UTF16_BE + HTML.encode("utf-16-be"), id="utf-16-be with BOM"),
        pytest.param(FRENCH.encode("latin-1"), id="latin-1"),
        pytest.param("<p>“smart quotes” – €5 … ‘ok’</p>".encode("cp1252"), id="windows-1252"),
        pytest.param(FRENCH.encode("latin-1") + b"\x81", id="latin-1 with one stray byte"),
        pytest.param(("x" * 99 + "\x1b").encode() * 10, id="one escape in a hundred"),
        pytest.param(b"<p>fine</p>" * 1000 + b"\0" * 100, id="NUL only past the sniffed part"),
        pytest.param(b"<p>" + "é".encode() * SNIFF_BYTES, id="utf-8 cut inside a character"),
    ],
)
def test_text_is_text(body: bytes) -> None:
    assert looks_like_text(body)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>\0<body>text</body></html>", id="one NUL"),
        pytest.param(_random_bytes(8192), id="random bytes"),
        pytest.param(_random_bytes(8192, without_nul=True), id="random bytes without NUL"),
        pytest.param(gzip.compress(HTML.encode() * 50), id="gzip"),
        pytest.param(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", id="png"),
        pytest.param(b"<p>" + bytes(range(1, 32)) * 20 + b"</p>", id="control characters"),
        pytest.param(HTML.encode("utf-16-le"), id="utf-16 without BOM"),
        pytest.param(codecs.BOM_UTF16_LE + _random_bytes(4096, seed=3), id="utf-16 BOM then junk"),
        pytest.param(codecs.BOM_UTF8 + _random_bytes(4096, seed=5), id="utf-8 BOM then junk"),
    ],
)
def test_binary_is_not_text(body: bytes) -> None:
    assert not looks_like_text(body)


def test_only_the_first_bytes_count() -> None:
    text = b"<p>" + b"a" * (SNIFF_BYTES - 3)
    assert looks_like_text(text + _random_bytes(100_000))
    assert not looks_like_text(_random_bytes(SNIFF_BYTES) + text * 100)


def test_a_few_control_characters_pass_but_many_do_not() -> None:
    words = b"some ordinary words " * 50  # 1000 bytes
    assert looks_like_text(words + b"\x07" * 40)  # under one in twenty
    assert not looks_like_text(words + b"\x07" * 80)
