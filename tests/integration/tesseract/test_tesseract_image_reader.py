"""TesseractImageReader beyond the ImageReader contract: modes, limits, timeouts, priority.

tesseract itself is installed by ``scripts/install-ocr.sh`` (``make services``); these
tests do not skip without it, so a machine that lacks it fails them.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import pytesseract
import pytest
from PIL import Image

from skr.adapters.tesseract_image_reader import TesseractImageReader
from skr.ports.image_reader import ImageReading
from tests.fixtures.images import JPEG_BYTES, PNG_BYTES, encode, png_header, text_image, words

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_ocr_text_has_its_whitespace_normalised() -> None:
    image = text_image("Blueprint   registry\n\n42", size=(1400, 500))
    reading = await TesseractImageReader().read(encode(image, "PNG"))
    assert reading is not None
    assert "\n" not in reading.text and "  " not in reading.text
    assert {"blueprint", "registry", "42"} <= words(reading.text)


@pytest.mark.parametrize(
    ("image_format", "mode"),
    [("PNG", "RGBA"), ("PNG", "L"), ("PNG", "1"), ("GIF", "P"), ("WEBP", "RGB"), ("BMP", "RGB")],
)
async def test_other_modes_and_formats_are_read(image_format: str, mode: str) -> None:
    image = text_image(mode="RGBA" if mode == "RGBA" else "RGB")
    if mode not in ("RGB", "RGBA"):
        image = image.convert(mode)
    reading = await TesseractImageReader().read(encode(image, image_format))
    assert reading is not None and (reading.width, reading.height) == (1400, 240)
    assert {"blueprint", "registry"} <= words(reading.text)


async def test_sixteen_bit_grey_is_read() -> None:
    grey = text_image().convert("L")
    wide = grey.point(lambda v: v * 256 + 255, mode="I").convert("I;16")
    reading = await TesseractImageReader().read(encode(wide, "PNG"))
    assert reading is not None
    assert {"blueprint", "registry"} <= words(reading.text)


async def test_tiny_images_are_measured_but_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    def recording(*args: object, **kwargs: object) -> str:
        calls.append(args)
        return "x"

    monkeypatch.setattr(pytesseract, "image_to_string", recording)
    reader = TesseractImageReader()
    for size in [(16, 16), (400, 20), (20, 400)]:
        reading = await reader.read(encode(Image.new("RGB", size, "white"), "PNG"))
        assert reading == ImageReading(size[0], size[1], "")
    assert calls == []


async def test_a_header_claiming_a_huge_size_is_refused() -> None:
    reader = TesseractImageReader()
    assert await reader.read(png_header(100_000, 100_000)) is None  # Pillow's own limit
    assert await reader.read(png_header(8_000, 8_000)) is None  # 64 Mpx > 40 Mpx, ours
    assert await reader.read(png_header(2**31 - 1, 1)) is None


async def test_max_pixels_is_per_reader_and_leaves_pillow_alone() -> None:
    limit_before = Image.MAX_IMAGE_PIXELS
    data = encode(Image.new("L", (2000, 1000), 255), "PNG")
    assert await TesseractImageReader(max_pixels=1_999_999).read(data) is None
    reading = await TesseractImageReader(max_pixels=2_000_000).read(data)
    assert reading is not None and (reading.width, reading.height) == (2000, 1000)
    assert limit_before == Image.MAX_IMAGE_PIXELS


async def test_a_slow_ocr_is_stopped_after_the_timeout() -> None:
    noise = Image.effect_noise((3000, 3000), 120)  # seconds of work for tesseract
    data = encode(noise, "PNG", compress_level=1)
    reader = TesseractImageReader(timeout_seconds=0.2)
    assert reader.ocr_available
    started = time.monotonic()
    reading = await reader.read(data)
    elapsed = time.monotonic() - started
    assert reading == ImageReading(3000, 3000, "")
    # 0.2 s, then pytesseract's terminate-then-kill grace of up to a second
    assert elapsed < 3.0


async def test_without_tesseract_images_are_measured_and_one_warning_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "tesseract-not-installed-here")
    reader = TesseractImageReader()
    with caplog.at_level(logging.WARNING, logger="skr.adapters.tesseract_image_reader"):
        first = await reader.read(PNG_BYTES)
        second = await reader.read(JPEG_BYTES)
        assert not reader.ocr_available
    assert first == ImageReading(1400, 240, "")
    assert second == ImageReading(640, 200, "")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["tesseract is not installed; images are stored without OCR text"]


async def test_a_missing_language_turns_ocr_off_with_a_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = TesseractImageReader(languages="eng+xyz")
    with caplog.at_level(logging.WARNING, logger="skr.adapters.tesseract_image_reader"):
        assert not reader.ocr_available
        assert await reader.read(PNG_BYTES) == ImageReading(1400, 240, "")
    assert [r.getMessage() for r in caplog.records] == [
        "tesseract has no data for xyz (install tesseract-ocr-xyz); "
        "images are stored without OCR text"
    ]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="timeout"):
        TesseractImageReader(timeout_seconds=0)
    with pytest.raises(ValueError, match="max_pixels"):
        TesseractImageReader(max_pixels=0)


async def test_tesseract_runs_at_the_reader_s_lower_priority(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """tesseract itself (through a wrapper that notes its own nice value) runs niced."""
    real = shutil.which("tesseract")
    assert real is not None, "tesseract is installed by scripts/install-ocr.sh"
    noted = tmp_path / "nice.txt"
    wrapper = tmp_path / "tesseract"
    wrapper.write_text(f'#!/bin/sh\nnice > "{noted}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", str(wrapper))
    reading = await TesseractImageReader(niceness=5).read(encode(text_image(), "PNG"))
    assert reading is not None
    assert "Blueprint" in reading.text
    assert int(noted.read_text()) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5)
