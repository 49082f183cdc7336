"""The ImageReader contract: tesseract on images drawn here, and the fake.

tesseract itself is installed by ``scripts/install-ocr.sh`` (``make services``); these
tests do not skip without it, so a machine that lacks it fails them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from skr.adapters.tesseract_image_reader import TesseractImageReader
from skr.ports.image_reader import ImageReader, ImageReading
from tests.fakes.fake_image_reader import FakeImageReader
from tests.fixtures.images import GARBAGE, JPEG_BYTES, PHRASE, PNG_BYTES, png_header, words
from tests.fixtures.kinds import class_id

pytestmark = pytest.mark.anyio

READER_KINDS = [TesseractImageReader, FakeImageReader]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=READER_KINDS, ids=class_id)
def reader(request: pytest.FixtureRequest) -> Iterator[ImageReader]:
    if request.param is TesseractImageReader:
        yield TesseractImageReader()
    else:
        fake = FakeImageReader()
        fake.add(PNG_BYTES, width=1400, height=240, text=PHRASE)
        fake.add(JPEG_BYTES, width=640, height=200, text=PHRASE)
        yield fake


@pytest.fixture(params=READER_KINDS, ids=class_id)
def reader_without_ocr(request: pytest.FixtureRequest) -> ImageReader:
    """A reader that cannot read text: tesseract without the language's data, or the fake
    told so."""
    if request.param is TesseractImageReader:
        return TesseractImageReader(languages="eng+xyz")
    return FakeImageReader({PNG_BYTES: ImageReading(1400, 240, PHRASE)}, ocr_available=False)


async def test_png_and_jpeg_are_measured(reader: ImageReader) -> None:
    png = await reader.read(PNG_BYTES)
    jpeg = await reader.read(JPEG_BYTES)
    assert png is not None and (png.width, png.height) == (1400, 240)
    assert jpeg is not None and (jpeg.width, jpeg.height) == (640, 200)


async def test_text_is_read_when_ocr_is_available(reader: ImageReader) -> None:
    assert reader.ocr_available
    reading = await reader.read(PNG_BYTES)
    assert reading is not None
    assert {"blueprint", "registry", "42"} <= words(reading.text)


@pytest.mark.parametrize("data", GARBAGE, ids=range(len(GARBAGE)))
async def test_what_is_not_an_image_gives_none(reader: ImageReader, data: bytes) -> None:
    assert await reader.read(data) is None


async def test_a_header_claiming_a_huge_size_is_none(reader: ImageReader) -> None:
    assert await reader.read(png_header(8_000, 8_000)) is None


async def test_without_ocr_images_are_still_measured_and_read_as_no_text(
    reader_without_ocr: ImageReader,
) -> None:
    assert not reader_without_ocr.ocr_available
    assert await reader_without_ocr.read(PNG_BYTES) == ImageReading(1400, 240, "")
