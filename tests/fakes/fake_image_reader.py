"""An ImageReader for unit tests: decodes nothing, answers what it was told for known bytes."""

from __future__ import annotations

from dataclasses import replace

from skr.ports.image_reader import ImageReading


class FakeImageReader:
    """``readings`` maps image bytes to what reading them gives; other bytes are not images.

    With ``ocr_available=False`` it answers like a reader without tesseract: the sizes, and
    ``""`` for every text. ``reads`` records every call to :meth:`read`.
    """

    def __init__(
        self,
        readings: dict[bytes, ImageReading] | None = None,
        *,
        ocr_available: bool = True,
    ) -> None:
        self.readings: dict[bytes, ImageReading] = dict(readings or {})
        self._ocr_available = ocr_available
        self.reads: list[bytes] = []

    @property
    def ocr_available(self) -> bool:
        return self._ocr_available

    def add(self, data: bytes, *, width: int, height: int, text: str = "") -> bytes:
        """Make ``data`` an image of that size showing ``text``; returns ``data``."""
        self.readings[data] = ImageReading(width=width, height=height, text=text)
        return data

    async def read(self, data: bytes) -> ImageReading | None:
        self.reads.append(data)
        reading = self.readings.get(data)
        if reading is None or self._ocr_available:
            return reading
        return replace(reading, text="")
