"""Supervised training of a centre-head tracker (OSTrack, the CompressTracker teacher).

The batch call, the OSTrack actor's losses and the online tracker are the centre-head family's
(``trackers.methods.center_family``); this method adds the initial weights and the keep rate of the
candidate-elimination warm-up (written by ``callbacks.candidate_elimination``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from trackers.inference.online import OnlineTracker
from trackers.methods.base import TrackingModule
from trackers.methods.center_family import CenterLossWeights, CenterTrackerConfig, center_forward, center_head_losses
from trackers.models.checkpoints import load_initial_weights
from trackers.models.ostrack import OSTrack
from trackers.types import TrackerOutput, TrackingBatch

CE_KEEP_RATE_KEY = "ce_keep_rate"  # in checkpoints


class CenterHeadTraining(TrackingModule):
    """Trains ``network`` on GT boxes; evaluates it with the family's online tracker.

    Args:
        network: the tracker network (e.g. ``trackers.models.ostrack.OSTrack``).
        pretrained: backbone initialisation: ``mae`` (timm's MAE ViT-B weights) or a local MAE file.
        init_checkpoint: whole-network initialisation from an official ``.pth.tar`` or a ``.ckpt``.
        Further keyword arguments: ``TrackingModule``'s (optimizer, schedule, result folders).
    """

    def __init__(
        self,
        *,
        network: OSTrack,
        pretrained: str | None = None,
        init_checkpoint: str | None = None,
        loss_weights: CenterLossWeights = CenterLossWeights(),
        tracker: CenterTrackerConfig = CenterTrackerConfig(),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.network = network
        self.loss_weights = loss_weights
        self.tracker_config = tracker
        self.ce_keep_rate: float | None = None  # written by CandidateEliminationSchedule
        self.pretrained = pretrained
        self.init_checkpoint = init_checkpoint

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit":
            return
        load_initial_weights(self.network, self.pretrained, self.init_checkpoint)

    def forward(self, batch: TrackingBatch) -> TrackerOutput:
        return center_forward(self.network, batch, self.ce_keep_rate)

    def compute_losses(self, batch: TrackingBatch) -> dict[str, Tensor]:
        return center_head_losses(self(batch), batch, self.loss_weights)

    # The keep rate training ended with is part of the trained model: a run stopped before the
    # candidate-elimination warm-up finished must not be evaluated with eliminations it never saw.
    # After the official schedule the stored rate equals the configured ratio, as in the official tracker.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CE_KEEP_RATE_KEY] = self.ce_keep_rate

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.ce_keep_rate = checkpoint.get(CE_KEEP_RATE_KEY)

    def build_tracker(self) -> OnlineTracker:
        return self.tracker_config.build(self.network, self.ce_keep_rate)
