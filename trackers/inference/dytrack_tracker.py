"""DyTrack's online tracker: per frame, stop at the first exit whose IoU score reaches its threshold (spec §3, §7).

The exit rule: exit k answers when ``iou_k >= thresholds[k]``; the deepest exit always answers.
So a threshold of 0 (or -inf) stops every frame at that exit, and ``+inf`` (``NEVER_EXIT``) never
stops there: all thresholds at ``+inf`` is the always-deepest model. Blocks run once per frame: the
tracker walks ``DyTrack.iter_exits`` and leaves the loop, so later blocks never run.

Every frame's exit index and executed depth are recorded (``TrackResult.extras`` -> the OPE run's
``per_frame/<seq>/exit.txt`` and ``depth.txt``), and the tracker counts exits over its lifetime for
the test summary (exit distribution, mean depth, mean FLOPs per frame).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from trackers.inference.crop_config import CropConfig
from trackers.inference.online import CropTracker, TrackResult
from trackers.nn.heads.center import CenterHead
from trackers.nn.window import hann2d

NEVER_EXIT = math.inf
"""A threshold no IoU score reaches: the exit never answers (all of them: the always-deepest model)."""
EXIT_KEY, DEPTH_KEY = "exit", "depth"  # per-frame extras


def exit_thresholds(thresholds: float | Sequence[float], num_exits: int) -> tuple[float, ...]:
    """One threshold per shallow exit from a scalar or a list of ``num_exits - 1`` values (or ``num_exits``,
    whose last value is ignored: the deepest exit always answers)."""
    if isinstance(thresholds, (int, float)):
        return (float(thresholds),) * (num_exits - 1)
    values = tuple(float(t) for t in thresholds)
    if len(values) == num_exits:
        values = values[:-1]
    if len(values) != num_exits - 1:
        raise ValueError(
            f"tracker.thresholds: got {len(values)} values for {num_exits} exits; give one per shallow exit "
            f"({num_exits - 1}) or a single number"
        )
    return values


class DyTrackTracker(CropTracker):
    """Fixed template, Hann-windowed centre map, early exit by the learned IoU score."""

    def __init__(self, network: torch.nn.Module, *args, thresholds: Sequence[float] = (), use_window: bool = True,
                 **kwargs) -> None:
        super().__init__(network, *args, **kwargs)
        self.thresholds = exit_thresholds(thresholds, network.num_exits)
        self.use_window = use_window
        self.exit_counts = np.zeros(network.num_exits, dtype=np.int64)
        self.last_exit: int | None = None
        self.last_latency_s: float | None = None  # the network part of the last frame (crop excluded)

    def set_thresholds(self, thresholds: float | Sequence[float]) -> None:
        self.thresholds = exit_thresholds(thresholds, self.network.num_exits)

    def reset_counts(self) -> None:
        self.exit_counts[:] = 0

    def run_exits(self, search: torch.Tensor, force_exit: int | None = None):  # noqa: ANN201 - TrackerOutput
        """The output of the exit that answers (``force_exit``: stop there whatever the score)."""
        last = self.network.num_exits - 1
        for out in self.network.iter_exits(self.network.embed(self.template, search)):
            k = out.aux[EXIT_KEY]
            if force_exit is not None:
                if k == force_exit:
                    return out
            elif k == last or float(out.aux["iou"][0]) >= self.thresholds[k]:
                return out
        return out

    def predict(self, search: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        """The answering exit's windowed box and IoU score; ``last_latency_s`` times it (reading the
        score synchronises the device, so the time is the network's, not the launch's)."""
        start = time.perf_counter()
        out = self.run_exits(search)
        score_map = out.aux["score_map"]
        if self.use_window:
            score_map = score_map * hann2d(*score_map.shape[-2:], device=score_map.device)
        box = CenterHead.decode(score_map, out.aux["size_map"], out.aux["offset_map"])[0]
        score = float(out.aux["iou"][0])
        box = box.cpu()
        self.last_latency_s = time.perf_counter() - start
        self.last_exit = out.aux[EXIT_KEY]
        self.exit_counts[self.last_exit] += 1
        return box, score

    def track(self, frame: np.ndarray) -> TrackResult:
        result = super().track(frame)
        result.extras[EXIT_KEY] = float(self.last_exit)
        result.extras[DEPTH_KEY] = float(self.network.exits[self.last_exit])
        return result


@dataclass
class DyTrackTrackerConfig(CropConfig):
    """Test-time crops (OSTrack-256: template 128 @ 2.0, search 256 @ 4.0, Hann window) and the exit thresholds.

    ``thresholds``: one IoU threshold per shallow exit, or one for all (spec §3 suggests sweeping
    0.50..0.95 and picking with ``lightning calibrate``; 0.9 is the lab's DyHiT router default).
    """

    use_window: bool = True
    thresholds: list[float] = field(default_factory=lambda: [0.9])

    def build(self, network: torch.nn.Module) -> DyTrackTracker:
        template_size, search_size = self.sizes(network)
        network.eval()
        values = self.thresholds[0] if len(self.thresholds) == 1 else self.thresholds
        return DyTrackTracker(
            network,
            template_size,
            self.template_factor,
            search_size,
            self.search_factor,
            self.clip_margin,
            thresholds=values,
            use_window=self.use_window,
            name=type(network).__name__.lower(),
        )
