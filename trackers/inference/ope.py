"""One-pass evaluation of one sequence: the loop every benchmark run and `lightning track` share."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from trackers.inference.online import OnlineTracker


class FrameSource(Protocol):
    """What the loop needs from a sequence: its length, the first box and lazy frames."""

    def __len__(self) -> int: ...

    def load_frame(self, index: int) -> np.ndarray: ...


@dataclass
class SequenceRun:
    boxes: np.ndarray  # (L, 4) frame xywh; row 0 is the init box
    times: np.ndarray  # (L,) seconds per initialize/track call
    scores: np.ndarray  # (L,) confidence, NaN where the tracker gives none
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (L,), NaN where not given (frame 0)


def run_sequence(
    tracker: OnlineTracker,
    frames: FrameSource,
    init_box: np.ndarray,
    on_frame: Callable[[int], None] | None = None,
) -> SequenceRun:
    """Track every frame once. Times exclude image decoding, as the official runners do (spec §4.7)."""
    length = len(frames)
    boxes = np.zeros((length, 4), dtype=np.float64)
    times = np.zeros(length, dtype=np.float64)
    scores = np.full(length, np.nan, dtype=np.float64)
    extras: dict[str, np.ndarray] = {}
    frame = frames.load_frame(0)
    start = time.perf_counter()
    tracker.initialize(frame, np.asarray(init_box, dtype=np.float64))
    times[0] = time.perf_counter() - start
    boxes[0] = init_box
    for i in range(1, length):
        frame = frames.load_frame(i)
        start = time.perf_counter()
        result = tracker.track(frame)
        times[i] = time.perf_counter() - start
        boxes[i] = result.box
        if result.score is not None:
            scores[i] = result.score
        for name, value in result.extras.items():
            extras.setdefault(name, np.full(length, np.nan, dtype=np.float64))[i] = value
        if on_frame is not None:
            on_frame(i)
    return SequenceRun(boxes, times, scores, extras)
