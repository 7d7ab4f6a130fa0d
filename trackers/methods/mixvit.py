"""Supervised training of MixViT, the dense corner-head teacher of MixFormerV2 (spec mixformerv2.md §2.6).

Loss (MixFormer): ``ciou·CIoU + l1·L1`` between the soft-argmax corner box and the GT box; inputs,
losses and tracker are the MixFormer family's (``trackers.methods.mixformer_family``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from trackers.inference.mixformerv2_tracker import MixFormerTracker, MixFormerTrackerConfig
from trackers.methods.base import TrackingModule
from trackers.methods.mixformer_family import (
    BoxLossWeights,
    box_losses,
    build_mixformer_tracker,
    check_template_number,
    mixformer_forward,
)
from trackers.models.checkpoints import load_weights
from trackers.models.mixvit import MixViT
from trackers.types import TrackerOutput, TrackingBatch


class MixViTTraining(TrackingModule):
    """Trains MixViT on GT boxes (the MixFormer recipe); evaluates it with fixed templates (no score module).

    Args:
        network: ``trackers.models.mixvit.MixViT``.
        pretrained: backbone initialisation: ``mae`` or a local MAE file.
        init_checkpoint: whole-network initialisation (official ``.pth.tar`` or ``.ckpt``).
        Further keyword arguments: ``TrackingModule``'s (optimizer, schedule, result folders).
    """

    def __init__(
        self,
        *,
        network: MixViT,
        pretrained: str | None = None,
        init_checkpoint: str | None = None,
        loss_weights: BoxLossWeights = BoxLossWeights(),
        tracker: MixFormerTrackerConfig = MixFormerTrackerConfig(),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.network = network
        self.loss_weights = loss_weights
        self.tracker_config = tracker
        self.pretrained = pretrained
        self.init_checkpoint = init_checkpoint

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage in ("fit", "validate"):
            check_template_number(self.trainer)
        if stage == "fit" and self.pretrained:
            load_weights(self.network, self.pretrained, source="pretrained")
        if stage == "fit" and self.init_checkpoint:
            load_weights(self.network, self.init_checkpoint)

    def forward(self, batch: TrackingBatch) -> TrackerOutput:
        return mixformer_forward(self.network, batch)

    def compute_losses(self, batch: TrackingBatch) -> dict[str, Tensor]:
        return box_losses(self(batch), batch, self.loss_weights)

    def build_tracker(self) -> MixFormerTracker:
        return build_mixformer_tracker(self.network, self.tracker_config, self.benchmark_under_test())
