"""What every centre-head method shares (OSTrack, the CompressTracker teacher and student, DyTrack's exits).

- the network call on a batch: the first template, the candidate-elimination template mask and the
  keep rate of the warm-up schedule (``center_forward``);
- the ground-truth losses of the OSTrack actor (``center_head_losses``, weights ``CenterLossWeights``):
  ``giou·GIoU + l1·L1 + focal·Focal``, the box losses on the box decoded at the *predicted* score
  peak against the GT box in xyxy clamped to [0, 1], the focal loss against the CenterNet Gaussian
  of the GT box (spec compresstracker.md §1.5);
- the online tracker (``CenterTrackerConfig.build``): Hann-windowed score map, fixed template.

Free functions and small dataclasses, so a method composes them with any base
(``TrackingModule``, ``DistillationModule``) instead of inheriting from another method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from trackers.inference.center_head_tracker import CenterHeadTracker
from trackers.inference.crop_config import CropConfig
from trackers.nn import box_ops
from trackers.nn.losses import focal_loss, gaussian_heatmap, giou_loss, l1_loss
from trackers.types import TrackerOutput, TrackingBatch


@dataclass
class CenterLossWeights:
    giou: float = 2.0
    l1: float = 5.0
    focal: float = 1.0


@dataclass
class CenterTrackerConfig(CropConfig):
    """Test-time crops (official OSTrack-256: template 128 @ 2.0, search 256 @ 4.0, Hann window);
    sizes default to the network's."""

    use_window: bool = True

    def build(self, network: nn.Module, ce_keep_rate: float | None = None) -> CenterHeadTracker:
        """``ce_keep_rate``: the rate training ended with (None: each CE block's configured ratio)."""
        template_size, search_size = self.sizes(network)
        network.eval()
        return CenterHeadTracker(
            network,
            template_size,
            self.template_factor,
            search_size,
            self.search_factor,
            self.clip_margin,
            use_window=self.use_window,
            ce_keep_rate=ce_keep_rate,
            name=type(network).__name__.lower(),
        )


def center_forward(
    network: nn.Module, batch: TrackingBatch, ce_keep_rate: float | None = None, **kwargs: Any
) -> TrackerOutput:
    """The network on a batch: first template, CE template mask, ``ce_keep_rate`` (None: configured ratios)."""
    template = batch["template"][:, 0]
    mask = network.ce_template_mask(template.shape[0], template.device)
    return network(template, batch["search"], ce_template_mask=mask, ce_keep_rate=ce_keep_rate, **kwargs)


def center_head_losses(out: TrackerOutput, batch: TrackingBatch, weights: CenterLossWeights) -> dict[str, Tensor]:
    """GIoU, L1, focal and their weighted sum ``total``; ``iou`` (detached) is for logging."""
    gt_cxcywh = batch["search_box"]
    gt_xyxy = box_ops.cxcywh_to_xyxy(gt_cxcywh).clamp(0.0, 1.0)
    pred_xyxy = box_ops.cxcywh_to_xyxy(out.boxes)
    score_map = out.aux["score_map"]
    heatmap = gaussian_heatmap(box_ops.cxcywh_to_xywh(gt_cxcywh), score_map.shape[-1])
    giou, iou = giou_loss(pred_xyxy, gt_xyxy)
    losses = {"giou": giou, "l1": l1_loss(pred_xyxy, gt_xyxy), "focal": focal_loss(score_map.squeeze(1), heatmap)}
    losses["total"] = weights.giou * losses["giou"] + weights.l1 * losses["l1"] + weights.focal * losses["focal"]
    losses["iou"] = iou.detach()
    return losses
