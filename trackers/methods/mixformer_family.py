"""What every MixFormer-family method shares (MixViT, the MixFormerV2 stages; spec mixformerv2.md).

- the two-template input: the sampler's two templates, index 0 = the later "template", 1 = the
  earlier "online template" (``mixformer_templates``, ``check_template_number``, ``mixformer_forward``);
- the box losses of both heads, corner (MixViT) and distribution (MixFormerV2): ``ciou·CIoU + l1·L1``
  between the predicted and the GT box (xyxy, clamped to [0, 1]) (``box_losses``, ``BoxLossWeights``);
- the distribution head's side distributions, and the corner head's marginals over the same four
  sides, which a distillation compares with a KL (``side_distributions``, ``corner_side_distributions``);
- the online tracker with the per-benchmark settings of the benchmark under test (``build_mixformer_tracker``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from trackers.errors import SetupError
from trackers.inference.mixformerv2_tracker import MixFormerTracker, MixFormerTrackerConfig
from trackers.models.mixvit import NUM_TEMPLATES
from trackers.nn.heads.corner import corner_marginals
from trackers.nn.heads.distribution import SIDES
from trackers.nn.losses import box_regression_losses
from trackers.types import TrackerOutput, TrackingBatch


@dataclass
class BoxLossWeights:
    ciou: float = 2.0
    l1: float = 5.0


def mixformer_templates(batch: TrackingBatch) -> Tensor:
    """The (B, 2, 3, H, W) static + online templates of a batch."""
    template = batch["template"]
    if template.dim() != 5 or template.shape[1] != NUM_TEMPLATES:
        raise SetupError(
            f"MixFormer trackers take {NUM_TEMPLATES} templates per sample (static + online), the batch has "
            f"template of shape {tuple(template.shape)}; set data.init_args.template.number: {NUM_TEMPLATES}"
        )
    return template


def check_template_number(trainer: L.Trainer) -> None:
    """Fail at start-up, not at the first batch, when the data module samples the wrong number of templates."""
    spec = getattr(getattr(trainer, "datamodule", None), "template", None)
    number = getattr(spec, "number", NUM_TEMPLATES)
    if number != NUM_TEMPLATES:
        raise SetupError(
            f"data.init_args.template.number is {number}; MixFormer trackers need {NUM_TEMPLATES} (static + online)"
        )


def mixformer_forward(network: nn.Module, batch: TrackingBatch, **kwargs: Any) -> TrackerOutput:
    """The network on a batch's two templates (checked) and search crop."""
    return network(mixformer_templates(batch), None, batch["search"], **kwargs)


def box_losses(out: TrackerOutput, batch: TrackingBatch, weights: BoxLossWeights) -> dict[str, Tensor]:
    """CIoU, L1 and their weighted sum ``total`` (``iou`` is logged only)."""
    losses = box_regression_losses(out.boxes, batch["search_box"])
    losses["total"] = weights.ciou * losses["ciou"] + weights.l1 * losses["l1"]
    return losses


def side_distributions(out: TrackerOutput) -> Tensor:
    """A distribution head's four per-side distributions (probabilities or logits), (B, 4, F) in l, r, t, b order."""
    return torch.stack([out.aux[f"prob_{side}"] for side in SIDES], dim=1)


def corner_side_distributions(out: TrackerOutput) -> Tensor:
    """A corner head's maps marginalised to the same four sides (left/top from the top-left map,
    right/bottom from the bottom-right map), (B, 4, F) probabilities in l, r, t, b order."""
    marginals = corner_marginals(out.aux["prob_tl"], out.aux["prob_br"])
    return torch.stack([marginals[f"prob_{side}"] for side in SIDES], dim=1)


def build_mixformer_tracker(network: nn.Module, config: MixFormerTrackerConfig, benchmark: str | None) -> MixFormerTracker:
    """The family tracker, with the per-benchmark settings of ``benchmark`` (None: the defaults)."""
    network.eval()
    return config.build(network, benchmark, name=type(network).__name__.lower())
