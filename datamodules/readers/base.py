"""The interface every training/evaluation dataset reader implements (spec tracking_ecosystem §1.6, §8.1).

A reader knows where a dataset's frames and annotations are; it knows nothing about sampling or
cropping. Annotations are parsed once per reader and cached (``preload`` before the DataLoader
forks its workers shares them), because annotation parsing dominates the cost of real datasets.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence

import cv2
import numpy as np

from trackers.errors import MissingFileError


class DatasetRootError(MissingFileError):
    """A dataset root (or a file a reader needs) is missing; the message names the config key to set."""


class FrameReadError(OSError):
    """A frame image could not be decoded; the message names the file."""


@dataclass(frozen=True)
class SequenceInfo:
    """Per-frame annotation of one sequence.

    boxes:   (L, 4) float64 frame xywh (absent frames may hold zeros or a stale box).
    valid:   (L,) bool, the box has positive size.
    visible: (L,) bool, valid and the target is actually seen (no full occlusion, in view).
    """

    boxes: np.ndarray
    valid: np.ndarray
    visible: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def require_root(root: str | Path, config_key: str) -> Path:
    """Return ``root`` as a Path, or fail with one line naming it and the config key that sets it."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetRootError(f"dataset root '{path}' does not exist: set {config_key} to the dataset folder")
    return path


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3); a missing or corrupt file raises FrameReadError naming it."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FrameReadError(f"cannot read frame '{path}' (missing or corrupt image file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class SequenceReader(ABC):
    """A dataset of sequences: frame files plus cached per-frame annotations.

    Subclasses implement ``num_sequences``, ``sequence_name``, ``frame_path`` and
    ``_read_sequence_info``; ``sequence_info`` caches the latter so each sequence's annotation
    files are parsed once per reader, never once per sample.
    """

    name: str = "dataset"
    is_video: bool = True

    def __init__(self) -> None:
        self._info_cache: dict[int, SequenceInfo] = {}

    @property
    @abstractmethod
    def num_sequences(self) -> int: ...

    @abstractmethod
    def sequence_name(self, i: int) -> str: ...

    @abstractmethod
    def frame_path(self, i: int, frame_id: int) -> Path:
        """Path of frame ``frame_id`` (0-based) of sequence ``i``."""

    @abstractmethod
    def _read_sequence_info(self, i: int) -> SequenceInfo:
        """Parse sequence ``i``'s annotation files (called once per sequence, then cached)."""

    def sequence_class(self, i: int) -> str | None:
        """Object class of sequence ``i`` where the dataset defines one."""
        return None

    def sequence_info(self, i: int) -> SequenceInfo:
        info = self._info_cache.get(i)
        if info is None:
            info = self._read_sequence_info(i)
            self._info_cache[i] = info
        return info

    def preload(self) -> list[SequenceInfo]:
        """Parse every annotation now (before workers fork, so they share the cache)."""
        return [self.sequence_info(i) for i in range(self.num_sequences)]

    def load_frames(self, i: int, frame_ids: Sequence[int]) -> list[np.ndarray]:
        """RGB uint8 frames of sequence ``i``; a frame requested twice is decoded once (shared array)."""
        decoded: dict[int, np.ndarray] = {}
        for frame_id in frame_ids:
            if frame_id not in decoded:
                decoded[frame_id] = read_rgb(self.frame_path(i, frame_id))
        return [decoded[f] for f in frame_ids]

    def __len__(self) -> int:
        return self.num_sequences

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, sequences={self.num_sequences})"
