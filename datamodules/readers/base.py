"""The interface every training/evaluation dataset reader implements (spec tracking_ecosystem §1.6, §8.1).

A reader knows where a dataset's frames and annotations are; it knows nothing about sampling or
cropping. All of a reader's annotations live in one ``AnnotationIndex`` of flat numpy arrays: it is
built once per dataset root and split (and cached on disk, see ``annotation_cache``), shared by
DataLoader workers after the fork, and cheap to slice per sequence. A sequence whose annotation
files are malformed is kept in the index with its error message, so it is reported and skipped
instead of stopping a run or vanishing without trace.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datamodules.readers.annotation_cache import load_or_build_index
from datamodules.readers.annotation_files import AnnotationError
from datamodules.readers.annotation_index import AnnotationIndex, SequenceInfo
from trackers.errors import MissingFileError
from trackers.frames import EncodedFrame, FrameReadError

__all__ = [
    "AnnotationIndex",
    "DatasetRootError",
    "FrameReadError",
    "SequenceFolderReader",
    "SequenceInfo",
    "SequenceReader",
    "fit_flags",
    "require_root",
]

MAX_LISTED_PROBLEMS = 10  # per-sequence warnings printed before a summary line


class DatasetRootError(MissingFileError):
    """A dataset root (or a file a reader needs) is missing; the message names the config key to set."""


def require_root(root: str | Path, config_key: str) -> Path:
    """Return ``root`` as a Path, or fail with one line naming it and the config key that sets it."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetRootError(f"dataset root '{path}' does not exist: set {config_key} to the dataset folder")
    return path


def fit_flags(flags: np.ndarray, length: int) -> np.ndarray:
    """Per-frame flags resized to the GT length; frames lacking a flag count as set (absent, never sampled)."""
    out = np.ones(length, dtype=bool)
    n = min(length, flags.size)
    out[:n] = flags[:n] != 0
    return out


class SequenceReader(ABC):
    """A dataset of sequences: frame files plus one cached ``AnnotationIndex``.

    Subclasses implement ``frame_path``, ``build_index`` (parse everything) and ``source_files``
    (the files the index is built from, whose modification times invalidate the cache), and set
    ``type_name`` (the config ``type``) and ``annotation_version`` (bump it when parsing changes).
    """

    type_name: ClassVar[str] = "dataset"
    annotation_version: ClassVar[int] = 1
    is_video: bool = True

    def __init__(self, root: Path, split: str | None, split_file: Path | None, name: str) -> None:
        self.root, self.split, self.split_file, self.name = root, split, split_file, name
        self._index: AnnotationIndex | None = None
        self._infos: dict[int, SequenceInfo] = {}
        self._reported = False

    @abstractmethod
    def frame_path(self, i: int, frame_id: int) -> Path:
        """Path of frame ``frame_id`` (0-based) of sequence ``i``."""

    @abstractmethod
    def build_index(self) -> AnnotationIndex:
        """Parse every annotation of this reader's split (called once per dataset, then cached)."""

    @abstractmethod
    def source_files(self) -> list[Path]:
        """Annotation and list files the index is built from (missing ones allowed)."""

    def cache_identity(self) -> dict[str, Any]:
        """What makes two indexes the same (the annotation cache key); readers add their options."""
        split_file = None if self.split_file is None else str(Path(self.split_file).resolve())
        return {"type": self.type_name, "version": self.annotation_version, "root": str(self.root.resolve()),
                "split": self.split, "split_file": split_file}

    # --------------------------------------------------------------------------- annotations
    @property
    def index(self) -> AnnotationIndex:
        if self._index is None:
            self._index = load_or_build_index(self)
        return self._index

    def preload(self) -> AnnotationIndex:
        """Build (or load) the index now, before workers fork, and warn once about unusable sequences."""
        index = self.index
        if not self._reported:
            self._reported = True
            _warn_each(f"{self.name}: skipping sequence", index.names, index.errors, "unreadable annotations")
            _warn_each(f"{self.name}: sequence", index.names, index.notes, "repaired annotations")
        return index

    @property
    def num_sequences(self) -> int:
        return len(self.index)

    def sequence_name(self, i: int) -> str:
        return str(self.index.names[i])

    def sequence_class(self, i: int) -> str | None:
        """Object class of sequence ``i`` where the dataset defines one."""
        return self.index.class_name(i)

    def sequence_info(self, i: int) -> SequenceInfo:
        """Annotations of sequence ``i``; an unparseable sequence raises its AnnotationError (file and line)."""
        info = self._infos.get(i)
        if info is None:
            error = str(self.index.errors[i])
            if error:
                raise AnnotationError(error)
            info = self._infos[i] = self.index.info(i)
        return info

    # --------------------------------------------------------------------------- frames
    def open_frames(self, i: int, frame_ids: Sequence[int]) -> list[EncodedFrame]:
        """Frames of sequence ``i`` read as bytes (decoded later, at the scale the crops need)."""
        opened: dict[int, EncodedFrame] = {}
        for frame_id in frame_ids:
            if frame_id not in opened:
                opened[frame_id] = EncodedFrame(self.frame_path(i, frame_id))
        return [opened[f] for f in frame_ids]

    def frame_size(self, i: int) -> tuple[int, int] | None:
        """(W, H) of sequence ``i``'s frames from the first frame's header; None when it is not on disk."""
        path = self.frame_path(i, 0)
        return EncodedFrame(path).size if path.is_file() else None

    def __len__(self) -> int:
        return self.num_sequences

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, root='{self.root}', split={self.split!r})"


@dataclass(frozen=True)
class ParsedSequence:
    """What a folder reader extracts from one sequence's annotation files."""

    info: SequenceInfo
    object_class: str | None = None
    note: str = ""


class SequenceFolderReader(SequenceReader):
    """A dataset with one folder (or annotation file) per sequence and a cheap up-front name list.

    Subclasses list the sequence names at construction (``self.names``) and implement
    ``parse_sequence`` and ``annotation_files``; ``build_index`` parses every sequence and records
    a malformed one as an error instead of failing the whole dataset.
    """

    def __init__(self, root: Path, split: str | None, split_file: Path | None, name: str,
                 names: Sequence[str]) -> None:
        super().__init__(root, split, split_file, name)
        self.names = list(names)

    @abstractmethod
    def parse_sequence(self, i: int) -> ParsedSequence:
        """Read sequence ``i``'s annotation files; raise AnnotationError naming the file and line."""

    @abstractmethod
    def annotation_files(self, i: int) -> list[Path]:
        """The annotation files of sequence ``i`` (for cache invalidation)."""

    def list_files(self) -> list[Path]:
        """Files the sequence list comes from (split lists, ``list.txt``)."""
        return [] if self.split_file is None else [Path(self.split_file)]

    def cache_identity(self) -> dict[str, Any]:
        return {**super().cache_identity(), "lists": [str(p.resolve()) for p in self.list_files()]}

    def source_files(self) -> list[Path]:
        return self.list_files() + [f for i in range(len(self.names)) for f in self.annotation_files(i)]

    @property
    def num_sequences(self) -> int:
        return len(self.names)

    def sequence_name(self, i: int) -> str:
        return self.names[i]

    def build_index(self) -> AnnotationIndex:
        infos: list[SequenceInfo | None] = []
        classes: list[str | None] = []
        errors: list[str] = []
        notes: list[str] = []
        for i in range(len(self.names)):
            try:
                parsed = self.parse_sequence(i)
            except (AnnotationError, FrameReadError) as exc:
                infos.append(None)
                classes.append(None)
                errors.append(str(exc))
                notes.append("")
                continue
            infos.append(parsed.info)
            classes.append(parsed.object_class)
            errors.append("")
            notes.append(parsed.note)
        return AnnotationIndex.from_sequences(self.names, infos, classes, errors, notes)


def visibility(boxes: np.ndarray, hidden: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(valid, visible) of frame boxes: ``valid = w > 0 & h > 0`` (NaN is invalid), ``visible = valid & ~hidden``."""
    with np.errstate(invalid="ignore"):
        valid = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    return valid, valid if hidden is None else valid & ~hidden


def count_images(folder: Path, suffix: str = ".jpg") -> int:
    """Number of ``*suffix`` files in ``folder`` (0 when it does not exist)."""
    try:
        return sum(1 for entry in Path(folder).iterdir() if entry.name.endswith(suffix))
    except OSError:
        return 0


def first_frame_only(boxes: np.ndarray, num_frames: int) -> np.ndarray:
    """A test-set GT holding only the first box, padded with NaN (unknown) to ``num_frames`` rows."""
    out = np.full((max(num_frames, len(boxes)), 4), np.nan)
    out[: len(boxes)] = boxes
    return out


def _warn_each(prefix: str, names: np.ndarray, messages: np.ndarray, what: str) -> None:
    bad = np.flatnonzero(messages != "")
    for i in bad[:MAX_LISTED_PROBLEMS]:
        warnings.warn(f"{prefix} '{names[i]}': {messages[i]}", stacklevel=3)
    if len(bad) > MAX_LISTED_PROBLEMS:
        warnings.warn(f"{prefix}s: {len(bad) - MAX_LISTED_PROBLEMS} more with {what} (first ones listed above)",
                      stacklevel=3)
