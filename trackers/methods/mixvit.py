"""Supervised training of MixViT, the dense corner-head teacher of MixFormerV2 (spec mixformerv2.md §2.6).

Loss (MixFormer): ``ciou·CIoU + l1·L1`` between the soft-argmax corner box and the GT box (xyxy,
clamped to [0, 1]). Inputs are the static and the online template (the sampler's two templates,
index 0 = the later "template", 1 = the earlier "online template") and the search crop.

Also holds what every MixFormer-family method shares: the two-template input, the box losses'
weights and the family's online tracker.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
from torch import Tensor, nn

from trackers.errors import SetupError
from trackers.inference.mixformerv2_tracker import MixFormerTracker, MixFormerTrackerConfig
from trackers.methods.base import TrackingModule
from trackers.methods.optim import OptimizerConfig, build_optimizer
from trackers.models.checkpoints import load_checkpoint
from trackers.models.mixvit import NUM_TEMPLATES, MixViT
from trackers.nn.losses import box_regression_losses
from trackers.nn.pretrained import load_mae_into
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


def weighted_box_losses(out: TrackerOutput, batch: TrackingBatch, weights: BoxLossWeights) -> dict[str, Tensor]:
    """CIoU, L1 and their weighted sum ``total`` (``iou`` is logged only)."""
    losses = box_regression_losses(out.boxes, batch["search_box"])
    losses["total"] = weights.ciou * losses["ciou"] + weights.l1 * losses["l1"]
    return losses


def build_mixformer_tracker(module: TrackingModule, network: nn.Module, config: MixFormerTrackerConfig) -> MixFormerTracker:
    """The family tracker, with the per-benchmark settings of the benchmark under test."""
    network.eval()
    benchmark = module._benchmark() if module._trainer is not None else None
    return config.build(network, benchmark, name=type(network).__name__.lower())


class MixViTTraining(TrackingModule):
    """Trains MixViT on GT boxes (the MixFormer recipe); evaluates it with fixed templates (no score module).

    Args:
        network: ``trackers.models.mixvit.MixViT``.
        pretrained: backbone initialisation: ``mae`` or a local MAE file.
        init_checkpoint: whole-network initialisation (official ``.pth.tar`` or ``.ckpt``).
    """

    def __init__(
        self,
        network: MixViT,
        pretrained: str | None = None,
        init_checkpoint: str | None = None,
        loss_weights: BoxLossWeights = BoxLossWeights(),
        optimizer: OptimizerConfig = OptimizerConfig(),
        tracker: MixFormerTrackerConfig = MixFormerTrackerConfig(),
        results_dir: str | None = None,
        resume_results: bool = True,
        tracker_name: str | None = None,
    ) -> None:
        super().__init__(results_dir=results_dir, resume_results=resume_results, tracker_name=tracker_name)
        self.save_training_hyperparameters("network")
        self.network = network
        self.loss_weights = loss_weights
        self.optimizer_config = optimizer
        self.tracker_config = tracker
        self.pretrained = pretrained
        self.init_checkpoint = init_checkpoint

    def setup(self, stage: str) -> None:
        """Initial weights are read when training starts (after the CLI checked the data), before
        Lightning restores a ``--ckpt_path``."""
        super().setup(stage)
        if stage in ("fit", "validate"):
            check_template_number(self.trainer)
        if stage == "fit" and self.pretrained:
            load_mae_into(self.network.backbone, self.pretrained)
        if stage == "fit" and self.init_checkpoint:
            load_checkpoint(self.network, self.init_checkpoint, family="mixvit")

    def forward(self, batch: TrackingBatch) -> TrackerOutput:
        return self.network(mixformer_templates(batch), None, batch["search"])

    def training_step(self, batch: TrackingBatch, batch_idx: int) -> Tensor:
        losses = weighted_box_losses(self(batch), batch, self.loss_weights)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=batch["search"].shape[0])
        return losses["total"]

    def validation_step(self, batch: TrackingBatch, batch_idx: int) -> None:
        losses = weighted_box_losses(self(batch), batch, self.loss_weights)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, sync_dist=True, batch_size=batch["search"].shape[0])

    def configure_optimizers(self) -> dict:
        return build_optimizer(self.network, self.optimizer_config)

    def build_tracker(self) -> MixFormerTracker:
        return build_mixformer_tracker(self, self.network, self.tracker_config)
