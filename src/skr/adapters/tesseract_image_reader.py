"""The ImageReader SKR runs: Pillow decodes and measures, the tesseract program reads text."""

from __future__ import annotations

import io
import logging
import os
import shutil
import threading
from typing import cast

import anyio.to_thread
import pytesseract
from PIL import Image, UnidentifiedImageError

from skr.ports.image_reader import ImageReading

log = logging.getLogger(__name__)

MIN_OCR_PIXELS = 32
"""Images narrower or lower than this (icons, spacers, bullets) are measured but not read."""
MAX_TEXT_CHARS = 20_000
# Only formats decoded by Pillow itself: EPS, for one, would run Ghostscript on web data.
_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
_OCR_MODES = frozenset({"1", "L", "RGB"})
_NOT_INSTALLED = "tesseract is not installed; images are stored without OCR text"
# Pillow's own refusals of hostile or broken data, on top of the size check made here.
_DECODE_ERRORS = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    ValueError,
    SyntaxError,  # some Pillow plugins signal a corrupt header this way
    EOFError,
    MemoryError,
)


class TesseractImageReader:
    """Measures images with Pillow and reads their text with tesseract (through pytesseract).

    Images over ``max_pixels`` (width × height) are refused as decompression bombs before
    their pixels are decoded. Whether tesseract (with ``languages``) is installed is found
    out once, on first use; without it images are still measured, their text is ``""``,
    and one warning says so. OCR runs in a worker thread and tesseract is killed after
    ``timeout_seconds``; an image it could not read in time gets the text ``""``.
    tesseract runs ``niceness`` lower in CPU priority than the calling thread (``nice``),
    so reading images yields the CPU to requests.
    """

    def __init__(
        self,
        *,
        languages: str = "eng",
        timeout_seconds: float = 10.0,
        max_pixels: int = 40_000_000,
        niceness: int = 0,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")  # 0 means none to pytesseract
        if max_pixels < 1:
            raise ValueError("max_pixels must be at least 1")
        self._languages = languages
        self._timeout_seconds = timeout_seconds
        self._max_pixels = max_pixels
        self._niceness = niceness
        self._ocr_ready: bool | None = None
        self._detect_lock = threading.Lock()

    @property
    def ocr_available(self) -> bool:
        """Found out on first use (``tesseract --list-langs``, a few milliseconds), then kept."""
        return self._detect()

    async def read(self, data: bytes) -> ImageReading | None:
        return await anyio.to_thread.run_sync(self.read_sync, data)

    def read_sync(self, data: bytes) -> ImageReading | None:
        """What :meth:`read` does, in the calling thread."""
        image = self._decode(data)
        if image is None:
            return None
        with image:
            width, height = image.size
            text = self._ocr(image) if min(width, height) >= MIN_OCR_PIXELS else ""
        return ImageReading(width=width, height=height, text=text)

    def _decode(self, data: bytes) -> Image.Image | None:
        image: Image.Image | None = None
        try:
            # open() reads only the header; the size is checked before any pixel is decoded
            image = Image.open(io.BytesIO(data), formats=_FORMATS)
            width, height = image.size
            if width < 1 or height < 1 or width * height > self._max_pixels:
                log.info("refused an image of %d x %d pixels", width, height)
                image.close()
                return None
            image.load()
        except _DECODE_ERRORS as exc:
            log.debug("could not decode an image of %d bytes: %s", len(data), exc)
            if image is not None:
                image.close()
            return None
        return image

    def _ocr(self, image: Image.Image) -> str:
        if not self._detect():
            return ""
        try:
            prepared = _for_ocr(image)
            text = pytesseract.image_to_string(
                prepared, lang=self._languages, timeout=self._timeout_seconds, nice=self._niceness
            )
        except RuntimeError as exc:  # pytesseract's timeout, and TesseractError
            log.warning("tesseract could not read an image: %s", exc)
            return ""
        except (OSError, ValueError, MemoryError) as exc:  # its temporary files, a bad mode
            log.warning("could not hand an image to tesseract: %s", exc)
            return ""
        return " ".join(str(text).split())[:MAX_TEXT_CHARS]

    def _detect(self) -> bool:
        with self._detect_lock:
            if self._ocr_ready is None:
                # tesseract's OpenMP threads spin while they wait, taking the cores the
                # embedding model needs; one thread per image (tesseract's own advice for
                # throughput) unless the operator says otherwise. pytesseract hands
                # os.environ to the tesseract process, so this is where it can be said.
                os.environ.setdefault("OMP_THREAD_LIMIT", "1")
                reason = _missing_reason(self._languages)
                if reason is not None:
                    log.warning(reason)
                self._ocr_ready = reason is None
            return self._ocr_ready


def _missing_reason(languages: str) -> str | None:
    """Why OCR cannot run, or ``None`` when tesseract and ``languages`` are installed."""
    if shutil.which(pytesseract.pytesseract.tesseract_cmd) is None:
        return _NOT_INSTALLED
    try:
        installed = set(pytesseract.get_languages(config=""))
    except OSError as exc:  # TesseractNotFoundError is one
        return f"{_NOT_INSTALLED} ({exc})"
    missing = [lang for lang in languages.split("+") if lang not in installed]
    if missing:
        return (
            f"tesseract has no data for {', '.join(missing)} "
            f"(install tesseract-ocr-{missing[0]}); images are stored without OCR text"
        )
    return None


def _for_ocr(image: Image.Image) -> Image.Image:
    """The image in a mode tesseract reads, transparent parts laid on white."""
    if image.mode in _OCR_MODES:
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if image.mode.startswith(("I", "F")):  # 16- and 32-bit greys: stretch to 8 bits
        wide = image.convert("I")
        low, high = cast("tuple[int, int]", wide.getextrema())  # one band: (min, max)
        scale = 255 / (high - low) if high > low else 1.0
        return wide.point(lambda v: (v - low) * scale).convert("L")
    return image.convert("RGB")
