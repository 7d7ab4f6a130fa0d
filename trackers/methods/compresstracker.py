"""CompressTracker: replacement training, prediction guidance and stage-wise feature mimicking (spec compresstracker.md §2).

The teacher's L blocks split into N stages (``stage_ranges``: even by default, or explicit
``stage_ends``); the N-block student starts from the teacher (embeddings, final norm and heads
copied; block i from the last block of stage i, officially, or the first, or its own random init).
At every training step ``callbacks.stochastic_stage_swap.StochasticStageSwap`` writes a stage
mask onto the module: a stage marked teacher runs the frozen teacher's blocks of that stage inside
the student's token stream (``BlockDrivenNetwork.run_blocks(..., blocks=teacher.backbone.blocks)``),
so those blocks see the student's embeddings and the student's norm and head finish the path, as
in the official code. Without the callback (or in validation and tracking) the pure student runs.

Loss per step (§2.8): the family's ground-truth losses on the hybrid-path prediction, plus
``distill * (guidance * [giou * GIoU(s, t) + l1 * L1(s, t)] + feature * mean_i ½(MSE_search,i + MSE_template,i))``
with the teacher's box (not clamped) and the raw hidden states at each stage end (whichever blocks
ran) against the teacher's after the stage's last block. The teacher runs under no_grad, frozen on
every rank (``TeacherFreeze``: eval mode by default, the official train mode with ``teacher_mode: train``).

Structure-agnostic: the family enters only through its batch call, embedding, head, ground-truth
losses and tracker (``CompressTracker`` for centre-head OSTracks, ``CompressTrackerMixFormer`` for
MixViT / MixFormerV2). Student and teacher share the width (the official code; the paper's
projections for other widths are not built: a different width is refused at fit start).

DDP: a replaced stage leaves its student block without gradients. Rather than asking the user for
``find_unused_parameters``, every student parameter takes part in every step: the replaced blocks
enter the loss with weight 0 (``participation``), so they get an exact zero gradient. This is
what a zeroed ``.grad`` gave the official PyTorch-1.x run: AdamW still applies its moments and
weight decay to them. It also keeps DDP correct when ranks draw different paths (``per_rank_draws``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from trackers.errors import SetupError
from trackers.inference.mixformerv2_tracker import MixFormerTrackerConfig
from trackers.inference.online import OnlineTracker
from trackers.methods.center_family import CenterLossWeights, CenterTrackerConfig, center_forward, center_head_losses
from trackers.methods.distillation import DistillationModule, FamilyForward
from trackers.methods.mixformer_family import (
    BoxLossWeights,
    box_losses,
    build_mixformer_tracker,
    check_template_number,
    mixformer_forward,
    mixformer_templates,
)
from trackers.models.checkpoints import load_weights
from trackers.models.compresstracker import StudentInit, stage_init_state, stage_ranges
from trackers.models.interface import BlockDrivenNetwork
from trackers.nn import box_ops
from trackers.nn.losses import giou_loss, l1_loss
from trackers.nn.vit import TokenState
from trackers.types import TrackerOutput, TrackingBatch

DEFAULT_TEACHER_STAGE = (
    "of the teacher without candidate elimination, produced by `lightning fit --config configs/ostrack_256.yaml "
    "--model.init_args.network.init_args.ce_loc [] --model.init_args.network.init_args.ce_keep_ratio []`, "
    "or an official OSTrack_ep0300.pth.tar"
)


@dataclass
class CompressLossWeights:
    """Official weights: GT giou 2, l1 5, focal 1 (GIoU and L1 reused by the guidance), dst 1, dst_logit 1, dst_feat 0.2."""

    giou: float = 2.0
    l1: float = 5.0
    focal: float = 1.0
    distill: float = 1.0
    guidance: float = 1.0
    feature: float = 0.2


@dataclass
class ReplacementOutputs:
    """One training forward: the student's (hybrid-path) prediction and stage-end states, the teacher's."""

    student: TrackerOutput
    student_stages: list[Tensor]
    layout: TokenState  # token layout (template / search counts) of the stage features
    teacher: TrackerOutput | None = None
    teacher_stages: list[Tensor] | None = None


def guidance_losses(student_boxes: Tensor, teacher_boxes: Tensor) -> dict[str, Tensor]:
    """Prediction guidance (box-only, §2.6): GIoU and L1 of the student's xyxy box against the teacher's, not clamped."""
    student_xyxy = box_ops.cxcywh_to_xyxy(student_boxes)
    teacher_xyxy = box_ops.cxcywh_to_xyxy(teacher_boxes.detach())
    giou, iou = giou_loss(student_xyxy, teacher_xyxy)
    return {"guidance_giou": giou, "guidance_l1": l1_loss(student_xyxy, teacher_xyxy), "guidance_iou": iou.detach()}


def stage_feature_mse(
    student: Sequence[Tensor], teacher: Sequence[Tensor], num_template: int, num_search: int
) -> tuple[Tensor, Tensor]:
    """Per-stage MSE over the search tokens and over the template tokens, each (N,) (§2.7; teacher detached)."""
    search = slice(num_template, num_template + num_search)
    mse_search = [F.mse_loss(s[:, search], t[:, search].detach()) for s, t in zip(student, teacher)]
    mse_template = [F.mse_loss(s[:, :num_template], t[:, :num_template].detach()) for s, t in zip(student, teacher)]
    return torch.stack(mse_search), torch.stack(mse_template)


class CompressTrackerDistillation(DistillationModule):
    """Family-agnostic CompressTracker; a family subclass supplies the batch call, head, GT losses and tracker.

    Args:
        network: the N-block deployable student (saved as ``network.*``; no teacher inside).
        teacher: the teacher architecture; weights from ``teacher_checkpoint`` at fit start.
        stage_ends: exclusive end of each stage over the teacher's blocks; None: the even split.
        student_init: student block i from the 'last' (official) or 'first' block of stage i, or 'random'.
        loss_weights: ``CompressLossWeights``; guidance and feature 0 give a ground-truth-only arm
            (the teacher then only initialises the student and lends its blocks).
        pretrained: must be null (the student starts from the teacher; accepted for presets such as cpu_smoke).
        Further keyword arguments: ``DistillationModule``'s (teacher_checkpoint, teacher_mode,
        save_teacher) and ``TrackingModule``'s (optimizer, schedule, result folders).
    """

    family_forward: FamilyForward

    def __init__(
        self,
        *,
        network: BlockDrivenNetwork,
        teacher: BlockDrivenNetwork,
        teacher_stage: str = DEFAULT_TEACHER_STAGE,
        stage_ends: Sequence[int] | None = None,
        student_init: StudentInit = "last",
        loss_weights: CompressLossWeights = CompressLossWeights(),
        pretrained: str | None = None,
        **kwargs: Any,
    ) -> None:
        if pretrained:
            raise SetupError("model.init_args.pretrained must be null for CompressTracker: the student starts from the teacher")
        super().__init__(network=network, teacher=teacher, teacher_stage=teacher_stage, **kwargs)
        self.stages = stage_ranges(teacher.backbone.depth, network.backbone.depth, stage_ends)
        self.student_init: StudentInit = student_init
        self.loss_weights = loss_weights
        self.replacement_p = 1.0  # written by StochasticStageSwap (per epoch)
        self.stage_mask: tuple[bool, ...] | None = None  # written by StochasticStageSwap (per step); None: pure student

    # ------------------------------------------------------------------ family parts

    @abstractmethod
    def embed(self, network: BlockDrivenNetwork, batch: TrackingBatch) -> TokenState:
        """The network's first token state on the batch."""

    @abstractmethod
    def ground_truth_losses(self, out: TrackerOutput, batch: TrackingBatch) -> dict[str, Tensor]:
        """The family's GT losses with ``total``."""

    def head(self, network: BlockDrivenNetwork, state: TokenState) -> TrackerOutput:
        return network.head(state)

    # ------------------------------------------------------------------ stages

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def teacher_stage_outputs(self) -> list[int]:
        """Teacher blocks whose outputs the stage ends imitate (the last block of each stage)."""
        return [stage[-1] for stage in self.stages]

    @property
    def learns_from_teacher(self) -> bool:
        w = self.loss_weights
        return w.distill > 0 and (w.guidance > 0 or w.feature > 0)

    def setup(self, stage: str) -> None:
        """Teacher weights (base), then the student's initial weights from them, before a ``--ckpt_path`` restore."""
        super().setup(stage)
        if stage != "fit":
            return
        width = (self.network.backbone.embed_dim, self.teacher.backbone.embed_dim)
        if width[0] != width[1]:
            raise SetupError(
                f"student width {width[0]} != teacher width {width[1]}: CompressTracker students share the teacher's "
                f"width (no projections); set model.init_args.network.init_args.embed_dim to {width[1]}"
            )
        state = stage_init_state(self.teacher.state_dict(), self.network.state_dict(), self.stages, self.student_init)
        load_weights(self.network, state)

    # ------------------------------------------------------------------ forward

    def forward(self, batch: TrackingBatch) -> TrackerOutput:
        """The pure student (what validation and tracking run)."""
        return self.replacement_forward(batch, None)[0]

    def replacement_forward(
        self, batch: TrackingBatch, stage_mask: Sequence[bool] | None
    ) -> tuple[TrackerOutput, list[Tensor], TokenState]:
        """The hybrid path of ``stage_mask`` (True: student block i; False: the teacher's blocks of stage i;
        None: all student): prediction, the raw tokens at each stage end, and their layout."""
        if stage_mask is not None and len(stage_mask) != self.num_stages:
            raise ValueError(f"stage mask {list(stage_mask)} has {len(stage_mask)} entries for {self.num_stages} stages")
        state = self.embed(self.network, batch)
        ends: list[Tensor] = []
        for i, stage in enumerate(self.stages):
            if stage_mask is None or stage_mask[i]:
                state = self.network.run_blocks(state, i, i + 1)
            else:
                state = self.network.run_blocks(state, stage.start, stage.stop, blocks=self.teacher.backbone.blocks)
            ends.append(state.tokens)
        return self.head(self.network, self.network.finalize(state)), ends, state

    @torch.no_grad()
    def teacher_outputs(self, batch: TrackingBatch) -> tuple[TrackerOutput, list[Tensor]]:
        """The teacher's prediction and its raw tokens after each stage's last block."""
        out = self.teacher_forward(self.family_forward, batch, return_features=self.teacher_stage_outputs)
        return out, [out.features[i] for i in self.teacher_stage_outputs]

    def training_outputs(self, batch: TrackingBatch) -> ReplacementOutputs:
        mask = self.stage_mask if self.training else None
        student, stages, layout = self.replacement_forward(batch, mask)
        outputs = ReplacementOutputs(student, stages, layout)
        if self.has_teacher_weights and self.learns_from_teacher:
            outputs.teacher, outputs.teacher_stages = self.teacher_outputs(batch)
        return outputs

    # ------------------------------------------------------------------ losses

    def losses_of(self, outputs: ReplacementOutputs, batch: TrackingBatch) -> dict[str, Tensor]:
        """Every loss term of one forward (§2.8); ``total`` is optimised."""
        losses = self.ground_truth_losses(outputs.student, batch)
        if outputs.teacher is None:
            return losses
        w = self.loss_weights
        losses.update(guidance_losses(outputs.student.boxes, outputs.teacher.boxes))
        losses["guidance"] = w.giou * losses["guidance_giou"] + w.l1 * losses["guidance_l1"]
        layout = outputs.layout
        mse_search, mse_template = stage_feature_mse(
            outputs.student_stages, outputs.teacher_stages, layout.num_template, layout.num_search
        )
        losses["feature"] = ((mse_search + mse_template) / 2).mean()
        losses["distill"] = w.guidance * losses["guidance"] + w.feature * losses["feature"]
        losses["total"] = losses["total"] + w.distill * losses["distill"]
        return losses

    def participation(self) -> Tensor:
        """0 x the student blocks that this step's path skipped: every student parameter gets a gradient (DDP)."""
        mask = self.stage_mask if self.training else None
        skipped = [p for i, s in enumerate(mask or ()) if not s for p in self.network.backbone.blocks[i].parameters()]
        zero = torch.zeros((), device=self.device)
        return sum((p.sum() * 0.0 for p in skipped if p.requires_grad), zero)

    def compute_losses(self, batch: TrackingBatch) -> dict[str, Tensor]:
        losses = self.losses_of(self.training_outputs(batch), batch)
        losses["total"] = losses["total"] + self.participation()
        if self.training and self.stage_mask is not None:
            losses["student_stages"] = torch.tensor(float(sum(self.stage_mask)), device=self.device)
        return losses


class CompressTracker(CompressTrackerDistillation):
    """CompressTracker on centre-head trackers (OSTrack teacher, OSTrack-style student): the official method.

    Args:
        tracker: the online tracker (official: template 128 @ 2.0, search 256 @ 4.0, Hann window).
        Further keyword arguments: ``CompressTrackerDistillation``'s.
    """

    family_forward = staticmethod(center_forward)

    def __init__(self, *, tracker: CenterTrackerConfig = CenterTrackerConfig(), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tracker_config = tracker

    def embed(self, network: BlockDrivenNetwork, batch: TrackingBatch) -> TokenState:
        template = batch["template"][:, 0]
        return network.embed(template, batch["search"], network.ce_template_mask(template.shape[0], template.device))

    def ground_truth_losses(self, out: TrackerOutput, batch: TrackingBatch) -> dict[str, Tensor]:
        w = self.loss_weights
        return center_head_losses(out, batch, CenterLossWeights(giou=w.giou, l1=w.l1, focal=w.focal))

    def build_tracker(self) -> OnlineTracker:
        return self.tracker_config.build(self.network)


class CompressTrackerMixFormer(CompressTrackerDistillation):
    """The same method on a MixViT / MixFormerV2 teacher and a shallower student of the same family
    (stages over its blocks, its own head; GT losses CIoU + L1 with the ``giou`` / ``l1`` weights).

    Args:
        tracker: the MixFormer online tracker settings.
        Further keyword arguments: ``CompressTrackerDistillation``'s.
    """

    family_forward = staticmethod(mixformer_forward)

    def __init__(
        self,
        *,
        tracker: MixFormerTrackerConfig = MixFormerTrackerConfig(),
        teacher_stage: str = "of the MixFormer-family teacher, produced by `lightning fit --config configs/mixformerv2_b.yaml`",
        **kwargs: Any,
    ) -> None:
        super().__init__(teacher_stage=teacher_stage, **kwargs)
        self.tracker_config = tracker

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate"):
            check_template_number(self.trainer)
        super().setup(stage)

    def embed(self, network: BlockDrivenNetwork, batch: TrackingBatch) -> TokenState:
        templates = mixformer_templates(batch)
        return network.embed(templates[:, 0], templates[:, 1], batch["search"])

    def ground_truth_losses(self, out: TrackerOutput, batch: TrackingBatch) -> dict[str, Tensor]:
        return box_losses(out, batch, BoxLossWeights(ciou=self.loss_weights.giou, l1=self.loss_weights.l1))

    def build_tracker(self) -> OnlineTracker:
        return build_mixformer_tracker(self.network, self.tracker_config, self.benchmark_under_test())
