"""MixFormerV2: distillation-based model reduction (spec mixformerv2.md §3-§5).

1. Dense-to-sparse distillation (``DenseToSparseDistillation``). A 12-layer MixFormerV2 student
   with four prediction tokens learns from a frozen dense MixViT teacher. The teacher's corner maps
   are marginalised into four 1-D side distributions (left/top from the top-left map, right/bottom
   from the bottom-right map), which the student's per-side bin logits imitate with a forward KL;
   GT boxes add CIoU and L1: ``L = ciou·CIoU + l1·L1 + logit·KL``. No feature loss in stage 1.

2. Deep-to-shallow distillation (``DeepToShallowDistillation``). The student starts as a copy of
   its teacher (the stage-1 model). Progressive model depth pruning (``callbacks.layer_decay``)
   fades the chosen blocks out with a cosine residual scale gamma and then removes them, so the
   run continues with the shallower network. Besides the logit KL the student's block outputs
   imitate the teacher's (feature mimicking, pairs renumbered with the pruning):
   ``L = ciou·CIoU + l1·L1 + logit·KL + feature·MSE``. MixFormerV2-S follows the same recipe
   twice more: 8 -> 4 layers with the 8-layer model as intermediate teacher, then MLP reduction,
   where each student MLP starts as the leading slice of its teacher's (``init_reduce_mlp``),
   optionally at a new input size (sin-cos tables are regenerated, never loaded).

3. Score head (``ScoreHeadTraining``). Everything but the score head is frozen; on positive and
   negative search crops the head learns the target's presence with a BCE loss.

Official code vs paper (the default is the code; the config switches give the paper):
KL weight 5 with the KL averaged over the 4 sides (paper lambda 1) -> ``loss_weights.logit``;
gamma on each residual branch vs the whole block -> ``network.init_args.gamma_mode``; frozen
fading blocks, schedule, single run -> ``LayerDecay`` arguments; score head MLP-then-mean vs
mean-then-MLP -> ``network.init_args.score_reduction``.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from trackers.errors import SetupError
from trackers.freezing import freeze
from trackers.inference.mixformerv2_tracker import MixFormerTracker, MixFormerTrackerConfig
from trackers.methods.base import TrackingModule
from trackers.methods.distillation import (
    TEACHER_CHECKPOINT_KEY,
    TEACHER_PREFIX,
    DistillationModule,
    require_checkpoint,
)
from trackers.methods.mixformer_family import (
    BoxLossWeights,
    box_losses,
    build_mixformer_tracker,
    check_template_number,
    corner_side_distributions,
    mixformer_forward,
    side_distributions,
)
from trackers.models.checkpoints import LIGHTNING_MODEL_PREFIX, load_weights
from trackers.models.mixformerv2 import MixFormerV2
from trackers.models.mixvit import MixViT
from trackers.nn.losses import box_regression_losses, distribution_kl_loss
from trackers.types import TrackerOutput, TrackingBatch

SCORE_HEAD_ATTRIBUTE = "score_head"
SCORE_HEAD_PREFIX = f"{SCORE_HEAD_ATTRIBUTE}."
PRUNED_BLOCKS_KEY = "pruned_blocks"  # in checkpoints: the blocks a depth-pruning run removed
INIT_CHECKPOINT_KEY = "model.init_args.init_checkpoint"
TEACHER_BACKBONE = "teacher"  # ``pretrained`` value: start the stage-1 student from the teacher's backbone


@dataclass
class DistillLossWeights(BoxLossWeights):
    """Official stage-1/2 weights: CIoU 2, L1 5, logit KL 5 (paper: 1), feature MSE 0.2 (stage 1: 0)."""

    logit: float = 5.0
    feature: float = 0.2


@dataclass
class ScoreLossWeights:
    score: float = 1.0


def _max_drop_path_rate(network: MixFormerV2) -> float:
    return max((getattr(block.drop_path, "drop_prob", 0.0) for block in network.backbone.blocks), default=0.0)


def _check_same_bins(network: MixFormerV2, teacher: MixFormerV2) -> None:
    if teacher.num_bins != network.num_bins:
        raise SetupError(
            f"student num_bins {network.num_bins} != teacher num_bins {teacher.num_bins}: the logit KL compares "
            f"bin by bin; set model.init_args.network.init_args.num_bins to the teacher's (or null for both)"
        )


def _reject_pretrained(pretrained: str | None, why: str) -> None:
    if pretrained:
        raise SetupError(f"model.init_args.pretrained must be null for this stage: {why}")


# ---------------------------------------------------------------------------------------------
# Stages 1 and 2: what they share
# ---------------------------------------------------------------------------------------------


class _MixFormerV2Distillation(DistillationModule):
    """Student MixFormerV2 vs frozen teacher on the same crops: box losses, side-distribution KL, feature MSE.

    Further keyword arguments: ``DistillationModule``'s (teacher checkpoint, feature pairs, teacher
    mode) and ``TrackingModule``'s (optimizer, schedule, result folders).
    """

    def __init__(
        self,
        *,
        network: MixFormerV2,
        loss_weights: DistillLossWeights,
        tracker: MixFormerTrackerConfig,
        **kwargs: Any,
    ) -> None:
        super().__init__(network=network, **kwargs)
        self.loss_weights = loss_weights
        self.tracker_config = tracker
        self.layer_gamma: dict[int, float] = {}  # written by LayerDecay

    @abstractmethod
    def teacher_side_probs(self, teacher: TrackerOutput) -> Tensor:
        """(B, 4, F) teacher probabilities over the student's bins, sides in l, r, t, b order."""

    @property
    def mimics_features(self) -> bool:
        return bool(self.feature_pairs) and self.loss_weights.feature > 0

    @property
    def learns_from_teacher(self) -> bool:
        """False when every teacher-side weight is 0 (a ground-truth-only arm): the teacher is not run."""
        return self.loss_weights.logit > 0 or self.mimics_features

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate"):  # before any weights are read
            check_template_number(self.trainer)
        super().setup(stage)

    def forward(self, batch: TrackingBatch) -> TrackerOutput:
        """The student's output with raw bin logits (and the mimicked block features)."""
        features = self.feature_pairs.student if self.mimics_features else ()
        return mixformer_forward(self.network, batch, softmax=False, return_features=features, gamma=self.layer_gamma)

    def compute_losses(self, batch: TrackingBatch) -> dict[str, Tensor]:
        student = self(batch)
        if not (self.has_teacher_weights and self.learns_from_teacher):  # ground-truth losses only
            return box_losses(student, batch, self.loss_weights)
        features = self.feature_pairs.teacher if self.mimics_features else ()
        teacher = self.teacher_forward(mixformer_forward, batch, softmax=True, return_features=features)
        w = self.loss_weights
        losses = box_losses(student, batch, w)
        losses["logit"] = distribution_kl_loss(side_distributions(student), self.teacher_side_probs(teacher))
        losses["total"] = losses["total"] + w.logit * losses["logit"]
        if self.mimics_features:
            losses["feature"] = self.feature_loss(student, teacher)
            losses["total"] = losses["total"] + w.feature * losses["feature"]
        losses["teacher_iou"] = box_regression_losses(teacher.boxes, batch["search_box"])["iou"]
        return losses

    def build_tracker(self) -> MixFormerTracker:
        return build_mixformer_tracker(self.network, self.tracker_config, self.benchmark_under_test())


# ---------------------------------------------------------------------------------------------
# Stage 1: dense-to-sparse
# ---------------------------------------------------------------------------------------------


class DenseToSparseDistillation(_MixFormerV2Distillation):
    """Stage 1: prediction-token student learns the dense corner teacher's side distributions.

    Args:
        network: 12-layer MixFormerV2 without score head, ``num_bins`` = the teacher's map side (None:
            set to it here).
        teacher: MixViT (pyramidal corner head); weights from ``teacher_checkpoint`` when fitting starts.
        pretrained: student backbone initialisation: ``mae`` or an MAE file (official), ``teacher``
            (the teacher's backbone: a stand-in for MAE where no weights can be had, e.g. the
            offline miniature reproduction; the teacher must have the student's width), None: random.
        Further keyword arguments: ``DistillationModule``'s and ``TrackingModule``'s.
    """

    def __init__(
        self,
        *,
        network: MixFormerV2,
        teacher: MixViT,
        teacher_stage: str = "of a MixViT teacher, produced by `lightning fit --config configs/mixvit_b.yaml`",
        pretrained: str | None = None,
        loss_weights: DistillLossWeights = DistillLossWeights(feature=0.0),
        tracker: MixFormerTrackerConfig = MixFormerTrackerConfig(),
        **kwargs: Any,
    ) -> None:
        if network.num_bins is None:  # bins follow the teacher: one per corner-map row/column
            network.set_num_bins(teacher.feat_size)
        if teacher.feat_size != network.num_bins:
            raise SetupError(
                f"model.init_args.network.init_args.num_bins is {network.num_bins} but the teacher's corner maps are "
                f"{teacher.feat_size} wide; the student needs one bin per teacher row/column"
            )
        super().__init__(
            network=network, teacher=teacher, teacher_stage=teacher_stage, loss_weights=loss_weights, tracker=tracker,
            **kwargs,
        )  # fmt: skip
        self.pretrained = pretrained

    def setup(self, stage: str) -> None:
        super().setup(stage)  # the teacher first: ``pretrained: teacher`` copies its backbone
        if stage == "fit" and self.pretrained == TEACHER_BACKBONE:  # before a --ckpt_path restore
            load_weights(self.network, self.teacher.backbone.state_dict(), source="pretrained")
        elif stage == "fit" and self.pretrained:
            load_weights(self.network, self.pretrained, source="pretrained")

    def teacher_side_probs(self, teacher: TrackerOutput) -> Tensor:
        return corner_side_distributions(teacher)


# ---------------------------------------------------------------------------------------------
# Stage 2: deep-to-shallow (and the S chain: intermediate teacher, MLP reduction)
# ---------------------------------------------------------------------------------------------


class DeepToShallowDistillation(_MixFormerV2Distillation):
    """Stage 2: a copy of the teacher becomes shallower (``LayerDecay``) or narrower (MLP reduction).

    Args:
        network: the student architecture before pruning (e.g. 12 layers for 12 -> 8). ``num_bins: null``
            takes the bins of the checkpoint the student starts from (at fit start) or is restored from.
        teacher: the teacher architecture; None = the student's (a deep copy of the architecture).
            ``num_bins: null``: those of ``teacher_checkpoint`` (or of the student, restoring a checkpoint
            without the teacher).
        teacher_checkpoint (via ``DistillationModule``): the teacher's weights (stage 1, or the
            intermediate teacher), read when fitting starts.
        init_checkpoint: the student's initial weights, read when fitting starts; None = the teacher checkpoint.
        init_prune_blocks: blocks of ``init_checkpoint`` to drop and renumber (official 2b from a 2a run).
        init_reduce_mlp: initialise smaller student MLPs as leading slices of the checkpoint's.
        pretrained: must be null (accepted so that presets such as cpu_smoke can set it for every method).
        feature_pairs (via ``DistillationModule``): student/teacher blocks for feature mimicking, in
            the student's numbering before pruning (renumbered when ``LayerDecay`` removes blocks).
        Further keyword arguments: ``DistillationModule``'s and ``TrackingModule``'s.
    """

    def __init__(
        self,
        *,
        network: MixFormerV2,
        teacher: MixFormerV2 | None = None,
        teacher_stage: str = (
            "of the 12-layer MixFormerV2, produced by `lightning fit --config configs/mixformerv2_b_stage1.yaml`"
        ),
        init_checkpoint: str | None = None,
        init_prune_blocks: Sequence[int] = (),
        init_reduce_mlp: bool = False,
        pretrained: str | None = None,
        loss_weights: DistillLossWeights = DistillLossWeights(),
        tracker: MixFormerTrackerConfig = MixFormerTrackerConfig(),
        **kwargs: Any,
    ) -> None:
        _reject_pretrained(pretrained, "the student starts from init_checkpoint (default: the teacher's)")
        teacher = copy.deepcopy(network) if teacher is None else teacher
        if None not in (teacher.num_bins, network.num_bins):
            _check_same_bins(network, teacher)
        super().__init__(
            network=network, teacher=teacher, teacher_stage=teacher_stage, loss_weights=loss_weights, tracker=tracker,
            **kwargs,
        )  # fmt: skip
        self.init_checkpoint = init_checkpoint
        self.init_prune_blocks = tuple(init_prune_blocks)
        self.init_reduce_mlp = init_reduce_mlp
        self.pruned_blocks: tuple[int, ...] = ()

    def setup(self, stage: str) -> None:
        """Teacher, then the student's initial weights (default: the teacher's), before a ``--ckpt_path`` restore."""
        super().setup(stage)
        if stage != "fit":
            return
        if self.init_checkpoint:
            path = require_checkpoint(self.init_checkpoint, INIT_CHECKPOINT_KEY, "of the student")
        else:
            path = require_checkpoint(self.teacher_checkpoint, TEACHER_CHECKPOINT_KEY, self.teacher_stage)
        # Unresolved bins of teacher and student are taken from their checkpoints by the loader.
        load_weights(self.network, path, prune_blocks=self.init_prune_blocks, reduce_mlp=self.init_reduce_mlp)
        _check_same_bins(self.network, self.teacher)

    def teacher_side_probs(self, teacher: TrackerOutput) -> Tensor:
        return side_distributions(teacher)

    # ------------------------------------------------------------------ progressive depth pruning

    def prune_blocks(self, blocks: Sequence[int]) -> None:
        """Remove student blocks: the network gets shallower, feature pairs follow the renumbering,
        stochastic depth is re-spread over the remaining blocks (as the official rebuild does)."""
        if self.pruned_blocks:
            raise RuntimeError(f"blocks {list(self.pruned_blocks)} were already pruned from this student")
        pairs = self.feature_pairs.after_removal(blocks)
        rate = _max_drop_path_rate(self.network)
        self.network.backbone.remove_blocks(blocks)
        self.network.backbone.set_drop_path_rate(rate)
        self.feature_pairs = pairs
        self.pruned_blocks = tuple(sorted(set(blocks)))
        self.layer_gamma = {}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[PRUNED_BLOCKS_KEY] = list(self.pruned_blocks)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Unresolved bins come from the checkpoint (the teacher's from its saved weights, else the student's);
        a checkpoint written after pruning holds the shallower student: prune this one the same way first."""
        state = checkpoint["state_dict"]
        self.network.adopt_num_bins(state, LIGHTNING_MODEL_PREFIX)
        self.teacher.adopt_num_bins(state, TEACHER_PREFIX)
        if self.teacher.num_bins is None and self.network.num_bins is not None:
            self.teacher.set_num_bins(self.network.num_bins)
        super().on_load_checkpoint(checkpoint)
        pruned = checkpoint.get(PRUNED_BLOCKS_KEY) or []
        if pruned and not self.pruned_blocks:
            self.prune_blocks(pruned)


# ---------------------------------------------------------------------------------------------
# Score head
# ---------------------------------------------------------------------------------------------


class ScoreHeadTraining(TrackingModule):
    """Trains only the score head on positive and negative search crops (BCE on ``search_visible``).

    The data module must deliver negatives: pairs whose search crop does not show the target,
    marked ``search_visible = False`` (official: half the samples, spec §5). Everything but the score
    head is frozen in train mode (its DropPath stays active, as in the official run).

    Args:
        network: the deployable MixFormerV2 with ``score_head: true``; ``num_bins: null`` takes the bins of
            ``init_checkpoint`` (at fit start) or of the checkpoint it is restored from.
        init_checkpoint: the distilled network (stage 2 / S chain, or an official ``.pth.tar``), read
            when fitting starts (required then).
        init_stage: how ``init_checkpoint`` is produced (for the error when it is missing).
        init_prune_blocks: blocks of ``init_checkpoint`` to drop (a pruning run that kept its faded blocks).
        pretrained: must be null (accepted so that presets such as cpu_smoke can set it for every method).
        Further keyword arguments: ``TrackingModule``'s (optimizer, schedule, result folders).
    """

    def __init__(
        self,
        *,
        network: MixFormerV2,
        init_checkpoint: str | None = None,
        init_stage: str = "of the distilled MixFormerV2, produced by `lightning fit --config configs/mixformerv2_b.yaml`",
        init_prune_blocks: Sequence[int] = (),
        pretrained: str | None = None,
        loss_weights: ScoreLossWeights = ScoreLossWeights(),
        tracker: MixFormerTrackerConfig = MixFormerTrackerConfig(),
        **kwargs: Any,
    ) -> None:
        _reject_pretrained(pretrained, "the network starts from init_checkpoint")
        if not network.has_score_head:
            raise SetupError("model.init_args.network.init_args.score_head must be true for score-head training")
        super().__init__(**kwargs)
        self.network = network
        self.loss_weights = loss_weights
        self.tracker_config = tracker
        self.init_checkpoint = init_checkpoint
        self.init_stage = init_stage
        self.init_prune_blocks = tuple(init_prune_blocks)
        for name, child in self.network.named_children():
            if name != SCORE_HEAD_ATTRIBUTE:
                freeze(child, mode="train")  # a box head built later for a checkpoint's bins is frozen too
        self._negatives = torch.zeros((), dtype=torch.long)

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate"):
            check_template_number(self.trainer)
        super().setup(stage)
        if stage == "fit":  # before a --ckpt_path restore; unresolved bins are taken from the checkpoint
            path = require_checkpoint(self.init_checkpoint, INIT_CHECKPOINT_KEY, self.init_stage)
            load_weights(self.network, path, prune_blocks=self.init_prune_blocks)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Unresolved bins come from the restored checkpoint (`lightning test --ckpt_path`, a resumed fit)."""
        self.network.adopt_num_bins(checkpoint["state_dict"], LIGHTNING_MODEL_PREFIX)

    def forward(self, batch: TrackingBatch) -> TrackerOutput:
        return mixformer_forward(self.network, batch, softmax=True, run_score_head=True)

    def compute_losses(self, batch: TrackingBatch) -> dict[str, Tensor]:
        score = self(batch).score
        target = batch["search_visible"].to(score.dtype)
        bce = F.binary_cross_entropy_with_logits(score, target)
        accuracy = ((score > 0) == batch["search_visible"]).to(score.dtype).mean()
        return {"score": bce, "total": self.loss_weights.score * bce, "accuracy": accuracy.detach()}

    def on_train_batch_start(self, batch: TrackingBatch, batch_idx: int) -> None:
        """Count the negative pairs of the epoch (warned about at its end when there are none)."""
        self._negatives = self._negatives.to(batch["search_visible"].device) + (~batch["search_visible"]).sum()

    def on_train_epoch_end(self) -> None:
        if int(self._negatives) == 0:
            rank_zero_warn(
                "score-head training saw no negative pair this epoch (search_visible is always True): the data "
                "module must sample negatives, or the score head only learns to say 'present'"
            )
        self._negatives = torch.zeros((), dtype=torch.long)

    def build_tracker(self) -> MixFormerTracker:
        return build_mixformer_tracker(self.network, self.tracker_config, self.benchmark_under_test())
