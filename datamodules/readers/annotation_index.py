"""The annotations of one reader as flat numpy arrays (``AnnotationIndex``) and one sequence's view of them.

Flat arrays rather than per-sequence objects: an index of tens of thousands of sequences is built
(or loaded from the annotation cache) once, shared by DataLoader workers after the fork without
copy-on-write churn, saved with ``np.savez``, and sliced per sequence in O(1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SequenceInfo:
    """Per-frame annotation of one sequence.

    boxes:   (L, 4) float64 frame xywh (absent frames may hold zeros, -1 or a stale box; NaN = unknown).
    valid:   (L,) bool, the box has positive size.
    visible: (L,) bool, valid and the target is actually seen (no full occlusion, in view).
    present: (L,) bool, the dataset's own flags say the target is seen, whatever its box (GOT-10k's
             ``cover > 0``, what that toolkit scores); defaults to ``visible`` for datasets without flags.
    """

    boxes: np.ndarray
    valid: np.ndarray
    visible: np.ndarray
    present: np.ndarray | None = None  # None: the same as ``visible``

    def __post_init__(self) -> None:
        if self.present is None:
            object.__setattr__(self, "present", self.visible)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass
class AnnotationIndex:
    """Every annotation of one reader as flat arrays; sequence ``i`` owns frames ``offsets[i]:offsets[i+1]``.

    ``class_ids`` index ``class_names`` (-1: no class); ``errors[i]`` is non-empty when sequence i
    could not be parsed (it then has no frames); ``notes[i]`` records a repaired inconsistency;
    ``extra`` holds reader-specific per-sequence arrays (e.g. COCO image files).
    """

    names: np.ndarray
    offsets: np.ndarray
    boxes: np.ndarray
    valid: np.ndarray
    visible: np.ndarray
    present: np.ndarray
    class_ids: np.ndarray
    class_names: np.ndarray
    errors: np.ndarray
    notes: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.names.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def info(self, i: int) -> SequenceInfo:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return SequenceInfo(self.boxes[a:b], self.valid[a:b], self.visible[a:b], self.present[a:b])

    def class_name(self, i: int) -> str | None:
        c = int(self.class_ids[i])
        return (str(self.class_names[c]) or None) if c >= 0 else None

    @classmethod
    def from_sequences(cls, names: Sequence[str], infos: Sequence[SequenceInfo | None],
                       classes: Sequence[str | None], errors: Sequence[str] | None = None,
                       notes: Sequence[str] | None = None, extra: dict[str, np.ndarray] | None = None,
                       ) -> AnnotationIndex:
        """Concatenate per-sequence results (``None`` info = unparseable sequence, zero frames)."""
        lengths = np.array([0 if info is None else len(info) for info in infos], dtype=np.int64)
        parts = [info for info in infos if info is not None and len(info)]

        def cat(attr: str, empty: np.ndarray) -> np.ndarray:
            return np.concatenate([getattr(p, attr) for p in parts]) if parts else empty

        class_names, class_ids = np.unique(np.array([c or "" for c in classes], dtype=str), return_inverse=True)
        class_ids = class_ids.astype(np.int32)
        if len(class_names) and class_names[0] == "":  # "" = no class
            class_ids -= 1
            class_names = class_names[1:]
        n = len(names)
        return cls(
            names=np.array(names, dtype=str).reshape(n),
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            boxes=cat("boxes", np.zeros((0, 4))).astype(np.float64, copy=False),
            valid=cat("valid", np.zeros(0, bool)).astype(bool, copy=False),
            visible=cat("visible", np.zeros(0, bool)).astype(bool, copy=False),
            present=cat("present", np.zeros(0, bool)).astype(bool, copy=False),
            class_ids=class_ids.reshape(n),
            class_names=class_names,
            errors=np.array(errors if errors is not None else [""] * n, dtype=str).reshape(n),
            notes=np.array(notes if notes is not None else [""] * n, dtype=str).reshape(n),
            extra=dict(extra or {}),
        )
