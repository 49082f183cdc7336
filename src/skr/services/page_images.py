"""The images on a page read for their text: fetched, measured and read by OCR, tiny ones
and non-images left out, each image URL read once while it is remembered."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, replace

from skr.domain.errors import FetchError
from skr.domain.models import ExtractedPage
from skr.ports.fetcher import Fetcher
from skr.ports.image_reader import ImageReader

logger = logging.getLogger(__name__)

IMAGE_MEDIA_TYPES = frozenset({"image/*"})
_IMAGE_READINGS_KEPT = 4096


@dataclass(frozen=True, slots=True)
class ImageOptions:
    """How images found on pages are read: at most ``max_per_page`` fetched, each at most
    ``max_bytes``; smaller than ``min_side`` pixels on a side is an icon, spacer or
    tracking pixel, and is left out."""

    max_per_page: int = 20
    max_bytes: int = 5_000_000
    min_side: int = 48


class PageImageReader:
    """Reads the images of extracted pages with an :class:`ImageReader`."""

    def __init__(self, *, fetcher: Fetcher, reader: ImageReader, options: ImageOptions) -> None:
        self._fetcher = fetcher
        self._reader = reader
        self._options = options
        # what each image URL held when last read: the same logo on every page of a site
        # is fetched and read once (None: not an image, or too small to keep)
        self._readings: OrderedDict[str, str | None] = OrderedDict()

    async def read_images(self, page: ExtractedPage) -> ExtractedPage:
        """Each image measured and read by OCR; tiny ones and non-images left out. An image
        that cannot be fetched keeps what the page says about it."""
        if not page.images:
            return page
        kept = []
        for image in page.images[: self._options.max_per_page]:
            try:
                text = await self._image_text(image.src)
            except FetchError as exc:
                logger.info("image %s not read: %s", image.src, exc.detail)
                kept.append(image)
                continue
            if text is not None:
                kept.append(replace(image, ocr_text=text) if text else image)
        return replace(page, images=kept)

    async def _image_text(self, src: str) -> str | None:
        """The text in the image at ``src`` ("" for none); ``None`` when it is not an
        image or too small to keep. Remembered for the last few thousand images."""
        if src in self._readings:
            self._readings.move_to_end(src)
            return self._readings[src]
        options = self._options
        fetched = await self._fetcher.fetch(
            src, accept=IMAGE_MEDIA_TYPES, max_bytes=options.max_bytes
        )
        reading = await self._reader.read(fetched.body)
        text = None
        if reading is not None and min(reading.width, reading.height) >= options.min_side:
            text = reading.text
        self._readings[src] = text
        while len(self._readings) > _IMAGE_READINGS_KEPT:
            self._readings.popitem(last=False)
        return text
