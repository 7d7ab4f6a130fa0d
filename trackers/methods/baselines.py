"""Trackers without learning, evaluated by the same OPE loop (floors for a benchmark's difficulty)."""

from __future__ import annotations

import torch
from torch import Tensor

from trackers.errors import SetupError
from trackers.inference.online import FirstBoxTracker, OnlineTracker
from trackers.methods.base import TrackingModule
from trackers.types import TrackingBatch


class FirstBoxBaseline(TrackingModule):
    """Repeats the first-frame box on every frame."""

    def __init__(self, *, results_dir: str | None = None, resume_results: bool = False, tracker_name: str | None = "first_box"):
        super().__init__(results_dir=results_dir, resume_results=resume_results, tracker_name=tracker_name)
        self._anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)  # gives Lightning a device

    def compute_losses(self, batch: TrackingBatch) -> dict[str, Tensor]:
        raise SetupError("FirstBoxBaseline has nothing to train; use it with `lightning test` only")

    def build_tracker(self) -> OnlineTracker:
        return FirstBoxTracker()
