"""Trackers without learning, evaluated by the same OPE loop (floors for a benchmark's difficulty)."""

from __future__ import annotations

import torch

from trackers.inference.online import FirstBoxTracker, OnlineTracker
from trackers.methods.base import TrackingModule


class FirstBoxBaseline(TrackingModule):
    """Repeats the first-frame box on every frame."""

    def __init__(self, results_dir: str | None = None, resume_results: bool = False, tracker_name: str | None = "first_box"):
        super().__init__(results_dir=results_dir, resume_results=resume_results, tracker_name=tracker_name)
        self._anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)  # gives Lightning a device

    def build_tracker(self) -> OnlineTracker:
        return FirstBoxTracker()
