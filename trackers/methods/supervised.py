"""Supervised training of a centre-head tracker (OSTrack, the CompressTracker teacher).

Loss (OSTrack actor): ``giou·GIoU + l1·L1 + focal·Focal`` with the weights from the config; the
box losses act on the box decoded at the *predicted* score peak, against the GT box in xyxy
clamped to [0, 1]; the focal loss against the CenterNet Gaussian of the GT box.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from trackers.inference.center_head_tracker import CenterHeadTracker
from trackers.inference.online import OnlineTracker
from trackers.methods.base import TrackingModule
from trackers.methods.optim import OptimizerConfig, build_optimizer
from trackers.models.checkpoints import load_checkpoint
from trackers.models.ostrack import OSTrack
from trackers.nn import box_ops
from trackers.nn.losses import focal_loss, gaussian_heatmap, giou_loss, l1_loss
from trackers.nn.pretrained import load_mae_into
from trackers.types import TrackerOutput, TrackingBatch


@dataclass
class CenterLossWeights:
    giou: float = 2.0
    l1: float = 5.0
    focal: float = 1.0


@dataclass
class TrackerConfig:
    """Test-time crops (official OSTrack-256: template 128 @ 2.0, search 256 @ 4.0, Hann window)."""

    template_size: int = 128
    template_factor: float = 2.0
    search_size: int = 256
    search_factor: float = 4.0
    use_window: bool = True


class SupervisedTracking(TrackingModule):
    """Trains ``network`` on GT boxes; evaluates it with the family's online tracker.

    Args:
        network: the tracker network (e.g. ``trackers.models.ostrack.OSTrack``).
        pretrained: backbone initialisation: ``mae`` (timm's MAE ViT-B weights) or a local MAE file.
        init_checkpoint: whole-network initialisation from an official ``.pth.tar`` or a ``.ckpt``.
    """

    def __init__(
        self,
        network: OSTrack,
        pretrained: str | None = None,
        init_checkpoint: str | None = None,
        loss_weights: CenterLossWeights = CenterLossWeights(),
        optimizer: OptimizerConfig = OptimizerConfig(),
        tracker: TrackerConfig = TrackerConfig(),
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
        self.ce_keep_rate: float | None = None  # written by CandidateEliminationSchedule
        self.pretrained = pretrained
        self.init_checkpoint = init_checkpoint

    def setup(self, stage: str) -> None:
        """Initial weights are read when training starts (after the CLI checked the data), and
        before Lightning restores a ``--ckpt_path``, which then takes precedence."""
        super().setup(stage)
        if stage != "fit":
            return
        if self.pretrained:
            load_mae_into(self.network.backbone, self.pretrained)
        if self.init_checkpoint:
            load_checkpoint(self.network, self.init_checkpoint, family="ostrack")

    # ------------------------------------------------------------------ training
    def forward(self, batch: TrackingBatch) -> TrackerOutput:
        template = batch["template"][:, 0]
        mask = self.network.ce_template_mask(template.shape[0], template.device)
        return self.network(template, batch["search"], ce_template_mask=mask, ce_keep_rate=self.ce_keep_rate)

    def compute_losses(self, out: TrackerOutput, batch: TrackingBatch) -> dict[str, Tensor]:
        gt_cxcywh = batch["search_box"]
        gt_xyxy = box_ops.cxcywh_to_xyxy(gt_cxcywh).clamp(0.0, 1.0)
        pred_xyxy = box_ops.cxcywh_to_xyxy(out.boxes)
        score_map = out.aux["score_map"]
        heatmap = gaussian_heatmap(box_ops.cxcywh_to_xywh(gt_cxcywh), score_map.shape[-1])
        giou, iou = giou_loss(pred_xyxy, gt_xyxy)
        losses = {"giou": giou, "l1": l1_loss(pred_xyxy, gt_xyxy), "focal": focal_loss(score_map.squeeze(1), heatmap)}
        w = self.loss_weights
        losses["total"] = w.giou * losses["giou"] + w.l1 * losses["l1"] + w.focal * losses["focal"]
        losses["iou"] = iou.detach()
        return losses

    def training_step(self, batch: TrackingBatch, batch_idx: int) -> Tensor:
        losses = self.compute_losses(self(batch), batch)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=batch["search"].shape[0])
        return losses["total"]

    def validation_step(self, batch: TrackingBatch, batch_idx: int) -> None:
        losses = self.compute_losses(self(batch), batch)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, sync_dist=True, batch_size=batch["search"].shape[0])

    # The keep rate training ended with is part of the trained model: a run stopped before the
    # candidate-elimination warm-up finished must not be evaluated with eliminations it never saw.
    # After the official schedule the stored rate equals the configured ratio, as in the official tracker.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ce_keep_rate"] = self.ce_keep_rate

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.ce_keep_rate = checkpoint.get("ce_keep_rate")

    def configure_optimizers(self):
        return build_optimizer(self.network, self.optimizer_config)

    # ------------------------------------------------------------------ evaluation
    def build_tracker(self) -> OnlineTracker:
        cfg = self.tracker_config
        self.network.eval()
        return CenterHeadTracker(
            self.network,
            cfg.template_size,
            cfg.template_factor,
            cfg.search_size,
            cfg.search_factor,
            use_window=cfg.use_window,
            ce_keep_rate=self.ce_keep_rate,
            name=type(self.network).__name__.lower(),
        )
