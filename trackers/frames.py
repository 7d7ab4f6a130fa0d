"""Frame files: read once, size from the JPEG header, decoded on demand at full or reduced scale.

Training crops are usually much smaller than the frame, so the pair pipeline asks for a frame's
size first (header only), plans its crops, and only then decodes — at 1/2, 1/4 or 1/8 scale when
every crop of that frame is downscaled at least that much (libjpeg's DCT scaling skips most of the
inverse DCT and colour conversion; the entropy decoding of the whole file remains). All decoding
goes through ``decode_rgb``, which lets libjpeg write RGB directly (no BGR->RGB pass); EXIF
orientation is ignored everywhere, because dataset boxes refer to the stored pixel grid (and the
header size must match the decoded array).
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import Protocol

import cv2
import simplejpeg
import numpy as np

DECODE_REDUCTIONS = (1, 2, 4, 8)
_RGB_FLAG = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB
_COLOR_FLAG = cv2.IMREAD_COLOR if _RGB_FLAG is None else _RGB_FLAG
_READ_FLAGS = {  # the reduced-colour flags are the reduction bits plus IMREAD_COLOR
    k: (flag & ~cv2.IMREAD_COLOR) | _COLOR_FLAG | cv2.IMREAD_IGNORE_ORIENTATION
    for k, flag in ((1, cv2.IMREAD_COLOR), (2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4),
                    (8, cv2.IMREAD_REDUCED_COLOR_8))
}
# JPEG start-of-frame markers (all SOFn except DHT 0xC4, JPG 0xC8, DAC 0xCC): they hold the image size.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI: no length field
_JPEG_END = b"\xff\xd9"  # EOI marker
_END_SEARCH = 64  # bytes at the end of a file searched for EOI (encoders may pad after it)


class FrameReadError(OSError):
    """A frame image is missing or cannot be decoded; the message names the file."""


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(W, H) from a JPEG's start-of-frame header, or None when ``data`` is not a readable JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE_MARKERS:
            i += 2
            continue
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                return None
            height = (data[i + 5] << 8) | data[i + 6]
            width = (data[i + 7] << 8) | data[i + 8]
            return (width, height) if width and height else None
        if marker == 0xDA:  # start of scan before any SOF: malformed
            return None
        i += 2 + ((data[i + 2] << 8) | data[i + 3])
    return None


def decode_rgb(data: bytes, path: Path | str, reduction: int = 1) -> np.ndarray:
    """RGB uint8 image of encoded ``data`` at 1/``reduction`` scale; FrameReadError naming ``path`` on failure.

    JPEGs go through libjpeg-turbo's SIMD decoder (simplejpeg), straight to RGB and with DCT-domain
    downscaling: about twice as fast as OpenCV's decoder, which the data benchmark's reference
    uses. Other formats go through OpenCV.
    """
    if reduction not in _READ_FLAGS:
        raise ValueError(f"decode reduction must be one of {DECODE_REDUCTIONS}, got {reduction}")
    size = jpeg_size(data) if data else None
    if size is not None:
        return _decode_jpeg(data, path, reduction, size)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _READ_FLAGS[reduction]) if data else None
    if image is None:
        raise FrameReadError(f"cannot decode frame '{path}' (corrupt or not an image file)")
    return image if _RGB_FLAG is not None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _decode_jpeg(data: bytes, path: Path | str, reduction: int, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    try:
        return simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_factor=reduction,
            min_width=math.ceil(width / reduction), min_height=math.ceil(height / reduction),
        )
    except ValueError as exc:  # simplejpeg reports corrupt data (and, strict, libjpeg warnings) this way
        raise FrameReadError(f"cannot decode frame '{path}' ({exc}): re-extract the dataset") from None


def read_file_bytes(path: Path | str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise FrameReadError(f"cannot read frame '{path}' ({exc.strerror or exc}): check the dataset copy") from None


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3); a missing or corrupt file raises FrameReadError naming it."""
    return decode_rgb(read_file_bytes(path), path)


class Frame(Protocol):
    """What the pair processing needs of a frame: its size, and RGB pixels at a chosen reduction."""

    max_reduction: int

    @property
    def size(self) -> tuple[int, int]: ...  # (W, H) of the full-resolution frame

    def decode(self, reduction: int = 1) -> np.ndarray: ...


class EncodedFrame:
    """A frame file held as bytes; ``size`` reads only the header, ``decode`` returns RGB pixels."""

    def __init__(self, path: Path | str, data: bytes | None = None) -> None:
        self.path = Path(path)
        self.data = read_file_bytes(path) if data is None else data
        self._full: np.ndarray | None = None

    @cached_property
    def _header_size(self) -> tuple[int, int] | None:
        return jpeg_size(self.data)

    @property
    def max_reduction(self) -> int:
        return DECODE_REDUCTIONS[-1] if self._header_size is not None else 1

    @property
    def size(self) -> tuple[int, int]:
        if self._header_size is not None:
            return self._header_size
        if self._full is None:  # not a JPEG: the size needs a full decode, kept for the crop
            self._full = decode_rgb(self.data, self.path)
        return self._full.shape[1], self._full.shape[0]

    def decode(self, reduction: int = 1) -> np.ndarray:
        if reduction == 1 and self._full is not None:
            return self._full
        if self._header_size is not None and _JPEG_END not in self.data[-_END_SEARCH:]:
            # libjpeg would fill the missing rows with grey and only print a warning
            raise FrameReadError(f"frame '{self.path}' is a truncated JPEG (no end marker): re-extract the dataset")
        if reduction > self.max_reduction:
            raise ValueError(f"'{self.path}' cannot be decoded at 1/{reduction} scale (max 1/{self.max_reduction})")
        image = decode_rgb(self.data, self.path, reduction)
        width, height = self.size
        if image.shape[:2] != (math.ceil(height / reduction), math.ceil(width / reduction)):
            raise FrameReadError(f"frame '{self.path}' decodes to {image.shape[1]}x{image.shape[0]} at 1/{reduction} "
                                 f"scale but its header says {width}x{height} (truncated or corrupt file)")
        return image


class DecodedFrame:
    """An RGB array already in memory (tests, in-memory readers): full resolution only."""

    max_reduction = 1

    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]

    def decode(self, reduction: int = 1) -> np.ndarray:
        if reduction != 1:
            raise ValueError("an in-memory frame has only its full resolution")
        return self.image


def as_frame(frame: Frame | np.ndarray) -> Frame:
    """Wrap an RGB array as a ``DecodedFrame``; frames pass through."""
    return DecodedFrame(frame) if isinstance(frame, np.ndarray) else frame
