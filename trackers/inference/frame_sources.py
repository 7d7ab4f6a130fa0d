"""Frames of a user's video file or image folder, decoded lazily, as the OPE loop's ``FrameSource``.

Benchmark sequences come with annotation files; `lightning track` gets a bare video or folder.
Both sources here hand out RGB uint8 frames by index, so ``run_sequence`` tracks them the same
way it tracks a benchmark sequence. Decoding is sequential (a video is read forward, a seek only
happens when an index is skipped or revisited), so memory stays at one frame.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from trackers.errors import BadFileError, MissingFileError
from trackers.frames import FrameReadError, read_rgb

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
FOLDER_FPS = 30.0  # an image folder has no frame rate; what a written video of it plays at


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers by value: 1.jpg, 2.jpg, 10.jpg (not 1, 10, 2)."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name))


class _IndexedFrames(ABC):
    """Shared by both sources: length, last-frame cache, in-order iteration."""

    path: Path
    fps: float
    _length: int

    def __init__(self) -> None:
        self._cached: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self._length

    def load_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as RGB uint8 (H, W, 3); asking for the same frame twice decodes it once."""
        if not 0 <= index < self._length:
            raise IndexError(f"frame {index} out of range [0, {self._length}) of {self.path}")
        if self._cached is None or self._cached[0] != index:
            self._cached = (index, self._decode(index))
        return self._cached[1]

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(self._length):
            yield self.load_frame(index)

    @abstractmethod
    def _decode(self, index: int) -> np.ndarray:
        """Frame ``index`` from the source (a file of the folder, a seek in the video)."""

    def close(self) -> None:
        """Release what the source holds open (a video decoder)."""


class ImageFolderFrames(_IndexedFrames):
    """Image files of a folder in natural order (hidden files and other suffixes are ignored)."""

    def __init__(self, folder: str | Path, max_frames: int | None = None) -> None:
        super().__init__()
        self.path = Path(folder)
        self.fps = FOLDER_FPS
        files = [p for p in self.path.iterdir()
                 if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
        if not files:
            raise BadFileError(
                f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {self.path}; "
                f"pass a folder of frames or a video file to --input"
            )
        self.files = sorted(files, key=lambda p: natural_key(p.name))[:max_frames]
        self._length = len(self.files)

    def _decode(self, index: int) -> np.ndarray:
        try:
            return read_rgb(self.files[index])
        except FrameReadError as err:
            raise BadFileError(str(err)) from None


class VideoFrames(_IndexedFrames):
    """A video file read with OpenCV (BGR -> RGB); the length is the container's frame count."""

    def __init__(self, path: str | Path, max_frames: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self._capture = cv2.VideoCapture(str(self.path))
        if not self._capture.isOpened():
            raise BadFileError(
                f"cannot open video {self.path} (not a video, or a codec OpenCV cannot read); "
                f"pass a readable video file or an image folder to --input"
            )
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if np.isfinite(fps) and fps > 0 else FOLDER_FPS
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:  # some containers do not store it: count by demuxing once
            count = self._count_frames()
        self._length = count if max_frames is None else min(count, max_frames)
        self._next = 0  # index the capture reads next
        if self._length == 0:
            raise BadFileError(f"video {self.path} has no frames; pass another --input")

    def _count_frames(self) -> int:
        count = 0
        while self._capture.grab():
            count += 1
        self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        return count

    def _decode(self, index: int) -> np.ndarray:
        if index != self._next:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = self._capture.read()
        if not ok or frame is None:
            raise BadFileError(
                f"video {self.path} ends or is corrupt at frame {index} although it declares {self._length} "
                f"frames; re-encode it or pass --max-frames {index}"
            )
        self._next = index + 1
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._capture.release()


def open_frames(path: str | Path, max_frames: int | None = None) -> ImageFolderFrames | VideoFrames:
    """A folder of images or a video file, at most ``max_frames`` long."""
    path = Path(path)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if path.is_dir():
        return ImageFolderFrames(path, max_frames)
    if path.is_file():
        return VideoFrames(path, max_frames)
    raise MissingFileError(f"input {path} does not exist; pass a video file or an image folder to --input")
