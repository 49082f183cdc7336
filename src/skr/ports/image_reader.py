"""The ImageReader port: what an image's pixels say (its size, and text found by OCR)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ImageReading:
    width: int
    height: int
    text: str  # text found in the image; "" when none (or when OCR is not available)


class ImageReader(Protocol):
    @property
    def ocr_available(self) -> bool:
        """Whether ``read`` finds text; when not, it still measures images."""
        ...

    async def read(self, data: bytes) -> ImageReading | None:
        """Measure the image and read the text in it; ``None`` when ``data`` is not an
        image this reader can decode. Bounded in time and memory (decompression bombs
        are refused as ``None``)."""
        ...
