"""The two contracts every room shares: the training batch and the network output."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from torch import Tensor


class TrackingBatch(TypedDict, total=False):
    """A collated training/validation batch (DESIGN.md "Contracts"), as the LightningModule receives it.

    Between the DataLoader workers and the device the images may travel as uint8 with pending
    ``template_brightness``/``search_brightness`` factors; ``TrackingDataModule.on_after_batch_transfer``
    turns them into the normalised floats below before any module or callback hook sees the batch.

    template:        (B, T, 3, Ht, Wt) float, ImageNet-normalised crops; index 0 is the latest template.
    template_box:    (B, T, 4) normalised crop cxcywh of the target in each template crop.
    template_mask:   (B, T, Ht, Wt) bool, True on padding (optional).
    search:          (B, 3, Hs, Ws) float, normalised.
    search_box:      (B, 4) normalised crop cxcywh of the target in the search crop.
    search_mask:     (B, Hs, Ws) bool, True on padding (optional).
    search_visible:  (B,) bool; False only for negative pairs of score-head training.
    dataset:         list[str] of the source dataset per sample (optional).
    redraws:         (B,) int64, draws rejected before each sample (bad data, invalid crops; optional),
                     summed per epoch by ``callbacks.data_health.DataHealthMonitor``.
    """

    template: Tensor
    template_box: Tensor
    template_mask: Tensor
    search: Tensor
    search_box: Tensor
    search_mask: Tensor
    search_visible: Tensor
    dataset: list[str]
    redraws: Tensor


@dataclass
class TrackerOutput:
    """What every network returns.

    boxes:    (B, 4) normalised crop cxcywh.
    score:    (B,) confidence logit, or None when the family has no score head.
    aux:      family-specific tensors by name (``score_map``, ``size_map``, ``offset_map``,
              ``prob_tl``, ``prob_l`` ..., ``backbone_feat``, ``removed_indexes``, per-exit outputs).
    features: token features after chosen blocks, keyed by block index (feature mimicking);
              empty unless asked for.
    """

    boxes: Tensor
    score: Tensor | None = None
    aux: dict[str, Any] = field(default_factory=dict)
    features: dict[int, Tensor] = field(default_factory=dict)
