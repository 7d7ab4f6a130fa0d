"""DyTrack training: every exit at once, IoU scores, target-aware self-distillation (spec dytrack.md §5-§6).

Per exit k: the OSTrack losses of the centre-head family (focal, GIoU, L1; ``center_head_losses``)
plus the IoU-score loss against ``sg(IoU(box_k, gt))`` (the exit's own decoded box; the target
carries no gradient), weighted by ``exit_weights[k]``. The shallow exits also mimic the deepest
exit's search tokens (``Distillation``): the teacher side is detached, so the distillation sends no
gradient into the deep blocks or heads; "target-aware" weights the tokens by a mask of the GT box
(hard box or the focal loss's Gaussian), plus ``background_weight`` elsewhere.

    L = sum_k w_k (L_box,k + iou_weight L_iou,k) + kd_weight sum_{k < last} L_kd,k

Initialisation (``setup("fit")``, never in ``__init__``): ``pretrained`` (MAE) for the backbone,
``init_checkpoint`` for the whole network: a DyTrack checkpoint, or a trained OSTrack / CompressTracker
student (official ``.pth.tar`` or ours; its head starts every exit, see ``trackers.models.dytrack``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from trackers.errors import SetupError
from trackers.evaluation.result_files import read_per_frame_values
from trackers.evaluation.speed import count_flops
from trackers.inference.dytrack_tracker import EXIT_KEY, DyTrackTracker, DyTrackTrackerConfig
from trackers.methods.base import TrackingModule
from trackers.methods.center_family import CenterLossWeights, center_head_losses
from trackers.models.checkpoints import load_initial_weights
from trackers.models.dytrack import DyTrack
from trackers.nn import box_ops
from trackers.nn.losses import gaussian_heatmap
from trackers.types import TrackerOutput, TrackingBatch

IoULossForm = Literal["mse", "l1", "smooth_l1", "bce"]
KDTarget = Literal["feature", "relation"]
KDMask = Literal["box", "gaussian"]
EXITS_FILE = "exits.json"  # the test's exit summary, next to the raw results and metrics.json


@dataclass
class IoUScoreLoss:
    """The IoU head's regression to the detached IoU of its exit's box (spec §6: MSE, weight 1)."""

    weight: float = 1.0
    form: IoULossForm = "mse"


@dataclass
class Distillation:
    """Target-aware self-distillation of the shallow exits towards the deepest exit (spec §5).

    target: ``feature`` (MSE between LayerNorm-ed projected student tokens and the LayerNorm-ed
        deepest tokens) or ``relation`` (KL between the students' and the teacher's softmaxed
        token-to-token cosine maps, rows weighted by the mask).
    mask: ``box`` (tokens whose patch centre is in the GT box) or ``gaussian`` (the focal loss's heat-map).
    background_weight: weight of the tokens outside the mask (0: target tokens only).
    temperature: of the relation softmax.
    """

    weight: float = 1.0
    target: KDTarget = "feature"
    mask: KDMask = "box"
    background_weight: float = 0.0
    temperature: float = 1.0


def target_mask(search_box_cxcywh: Tensor, grid: int, kind: KDMask) -> Tensor:
    """(B, grid*grid) token weights in [0, 1] from the normalised GT box, row-major like the search tokens."""
    if kind == "gaussian":
        return gaussian_heatmap(box_ops.cxcywh_to_xywh(search_box_cxcywh), grid).flatten(1)
    if kind != "box":
        raise SetupError(f"model.init_args.distillation.mask must be box | gaussian, got {kind!r}")
    x1, y1, x2, y2 = box_ops.cxcywh_to_xyxy(search_box_cxcywh).unbind(-1)
    centres = (torch.arange(grid, device=search_box_cxcywh.device, dtype=search_box_cxcywh.dtype) + 0.5) / grid
    inside_x = (centres[None, :] >= x1[:, None]) & (centres[None, :] <= x2[:, None])
    inside_y = (centres[None, :] >= y1[:, None]) & (centres[None, :] <= y2[:, None])
    return (inside_y[:, :, None] & inside_x[:, None, :]).flatten(1).to(search_box_cxcywh.dtype)


def self_distillation_loss(student: Tensor, teacher: Tensor, weights: Tensor, config: Distillation) -> Tensor:
    """One shallow exit's loss: ``student`` (B, N, C) projected tokens, ``teacher`` (B, N, C), ``weights`` (B, N).

    The teacher is detached here, whatever the caller passes.
    """
    teacher = teacher.detach()
    denom = weights.sum().clamp(min=1e-6)
    if config.target == "feature":
        s = F.layer_norm(student, student.shape[-1:])
        t = F.layer_norm(teacher, teacher.shape[-1:])
        per_token = (s - t).pow(2).mean(-1)
        return (per_token * weights).sum() / denom
    if config.target != "relation":
        raise SetupError(f"model.init_args.distillation.target must be feature | relation, got {config.target!r}")
    s, t = F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)
    log_s = (s @ s.transpose(1, 2) / config.temperature).log_softmax(-1)
    log_t = (t @ t.transpose(1, 2) / config.temperature).log_softmax(-1)
    per_row = (log_t.exp() * (log_t - log_s)).sum(-1)
    return (per_row * weights).sum() / denom


def iou_score_loss(logit: Tensor, target: Tensor, form: IoULossForm) -> Tensor:
    """The IoU head's loss against a (detached) IoU target in [0, 1]."""
    if form == "bce":
        return F.binary_cross_entropy_with_logits(logit, target)
    pred = logit.sigmoid()
    if form == "mse":
        return F.mse_loss(pred, target)
    if form == "l1":
        return F.l1_loss(pred, target)
    if form == "smooth_l1":
        return F.smooth_l1_loss(pred, target)
    raise SetupError(f"model.init_args.iou_loss.form must be mse | l1 | smooth_l1 | bce, got {form!r}")


def iou_target(out: TrackerOutput, batch: TrackingBatch) -> Tensor:
    """(B,) IoU of the exit's decoded box with the GT box, detached (the regression target)."""
    with torch.no_grad():
        gt = box_ops.cxcywh_to_xyxy(batch["search_box"]).clamp(0.0, 1.0)
        _, iou = box_ops.paired_giou_xyxy(box_ops.cxcywh_to_xyxy(out.boxes), gt)
    return iou.clamp(0.0, 1.0).detach()


class DyTrackTraining(TrackingModule):
    """Trains every exit of a ``DyTrack``; tests it with the early-exit tracker and prints the exit mix.

    Args:
        network: ``trackers.models.dytrack.DyTrack``.
        pretrained: backbone init, ``mae`` or a local MAE file.
        init_checkpoint: whole-network init (DyTrack, OSTrack or CompressTracker student; ``.pth.tar`` / ``.ckpt``).
        loss_weights: the OSTrack box-loss weights of every exit.
        exit_weights: w_k per exit (None: 1 for each; the spec's ablation: k / depth).
        iou_loss, distillation: see ``IoUScoreLoss``, ``Distillation``.
        tracker: crops and exit thresholds of the online tracker.
    """

    def __init__(
        self,
        *,
        network: DyTrack,
        pretrained: str | None = None,
        init_checkpoint: str | None = None,
        loss_weights: CenterLossWeights = CenterLossWeights(),
        exit_weights: list[float] | None = None,
        iou_loss: IoUScoreLoss = IoUScoreLoss(),
        distillation: Distillation = Distillation(),
        tracker: DyTrackTrackerConfig = DyTrackTrackerConfig(),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.network = network
        self.pretrained = pretrained
        self.init_checkpoint = init_checkpoint
        self.loss_weights = loss_weights
        if exit_weights is not None and len(exit_weights) != network.num_exits:
            raise SetupError(
                f"model.init_args.exit_weights has {len(exit_weights)} values for {network.num_exits} exits "
                f"{list(network.exits)}; give one per exit"
            )
        self.exit_weights = list(exit_weights) if exit_weights is not None else [1.0] * network.num_exits
        self.iou_loss = iou_loss
        self.distillation = distillation
        self.tracker_config = tracker

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit":
            return
        load_initial_weights(self.network, self.pretrained, self.init_checkpoint)

    def forward(self, batch: TrackingBatch) -> list[TrackerOutput]:
        return self.network.forward_exits(batch["template"][:, 0], batch["search"])

    def compute_losses(self, batch: TrackingBatch) -> dict[str, Tensor]:
        outputs = self(batch)
        losses: dict[str, Tensor] = {}
        total = batch["search"].new_zeros(())
        for k, (out, w) in enumerate(zip(outputs, self.exit_weights)):
            box = center_head_losses(out, batch, self.loss_weights)
            iou = iou_score_loss(out.score, iou_target(out, batch), self.iou_loss.form)
            total = total + w * (box["total"] + self.iou_loss.weight * iou)
            losses[f"e{k}_box"] = box["total"].detach()
            losses[f"e{k}_iou_loss"] = iou.detach()
            losses[f"e{k}_iou"] = box["iou"]
        if self.distillation.weight:
            kd = self.distillation_losses(outputs, batch)
            total = total + self.distillation.weight * kd
            losses["kd"] = kd.detach()
        losses["total"] = total
        return losses

    def distillation_losses(self, outputs: list[TrackerOutput], batch: TrackingBatch) -> Tensor:
        """Sum over the shallow exits of the target-aware loss towards the deepest exit's search tokens."""
        teacher = outputs[-1].aux["search_tokens"].detach()  # stop-gradient on the deep side
        grid = self.network.backbone.search_grid[0]
        mask = target_mask(batch["search_box"], grid, self.distillation.mask)
        weights = mask + self.distillation.background_weight * (1 - mask)
        loss = teacher.new_zeros(())
        for projector, out in zip(self.network.kd_projectors, outputs[:-1]):
            loss = loss + self_distillation_loss(projector(out.aux["search_tokens"]), teacher, weights, self.distillation)
        return loss

    def build_tracker(self) -> DyTrackTracker:
        return self.tracker_config.build(self.network)

    # ------------------------------------------------------------------ the test's exit summary

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        if not self.trainer.is_global_zero:
            return
        raw_dir = self._result_dir(self._benchmark(), self._tracker)
        summary = exit_summary(raw_dir, self._tracker)
        (raw_dir / EXITS_FILE).write_text(_json(summary))
        rank_zero_info(f"[{self.result_name(self._tracker)}] {format_exit_summary(summary)}")


def per_exit_flops(tracker: DyTrackTracker) -> list[float]:
    """FLOPs of one frame that answers at each exit (blocks up to it, heads of every exit run so far)."""
    search = torch.zeros(1, 3, tracker.search_size, tracker.search_size, device=tracker.device)
    if not hasattr(tracker, "template"):
        tracker.template = torch.zeros(1, 3, tracker.template_size, tracker.template_size, device=tracker.device)
    return [float(count_flops(lambda k=k: tracker.run_exits(search, force_exit=k))) for k in range(tracker.network.num_exits)]


def exit_summary(raw_dir: Path, tracker: DyTrackTracker) -> dict:
    """Exit distribution, mean executed depth and mean GFLOPs per frame over every sequence's ``exit.txt``."""
    counts = np.zeros(tracker.network.num_exits, dtype=np.int64)
    per_frame_root = raw_dir / "per_frame"
    for seq_dir in sorted(per_frame_root.glob("*")) if per_frame_root.is_dir() else []:
        exits = read_per_frame_values(raw_dir, seq_dir.name).get(EXIT_KEY)
        if exits is not None:
            valid = exits[np.isfinite(exits)].astype(np.int64)
            counts += np.bincount(valid, minlength=len(counts))[: len(counts)]
    flops = per_exit_flops(tracker)
    frames = int(counts.sum())
    share = counts / max(frames, 1)
    depths = np.asarray(tracker.network.exits, dtype=np.float64)
    return {
        "exits": list(tracker.network.exits),
        "thresholds": list(tracker.thresholds),
        "frames": frames,
        "counts": counts.tolist(),
        "share": share.tolist(),
        "mean_depth": float((share * depths).sum()),
        "gflops_per_exit": [f / 1e9 for f in flops],
        "mean_gflops": float((share * np.asarray(flops)).sum() / 1e9),
    }


def format_exit_summary(summary: dict) -> str:
    mix = ", ".join(f"after {d} blocks {100 * s:.1f}%" for d, s in zip(summary["exits"], summary["share"]))
    return (f"exit distribution over {summary['frames']} frames: {mix}; mean executed depth "
            f"{summary['mean_depth']:.2f} blocks; mean {summary['mean_gflops']:.3f} GFLOPs per frame "
            f"(always-deepest {summary['gflops_per_exit'][-1]:.3f})")


def _json(record: dict) -> str:
    return json.dumps(record, indent=2, default=float)

