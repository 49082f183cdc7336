"""FakeImageReader beyond the ImageReader contract: told "no OCR", it records its reads."""

from __future__ import annotations

import pytest

from skr.ports.image_reader import ImageReading
from tests.fakes.fake_image_reader import FakeImageReader
from tests.fixtures.images import PHRASE, PNG_BYTES

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_the_fake_without_ocr_still_measures() -> None:
    fake = FakeImageReader({PNG_BYTES: ImageReading(1400, 240, PHRASE)}, ocr_available=False)
    assert not fake.ocr_available


async def test_the_fake_without_ocr_reads_no_text() -> None:
    fake = FakeImageReader({PNG_BYTES: ImageReading(1400, 240, PHRASE)}, ocr_available=False)
    assert await fake.read(PNG_BYTES) == ImageReading(1400, 240, "")
    assert fake.reads == [PNG_BYTES]
