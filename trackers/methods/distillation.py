"""What every distillation method shares: a trainable student and a frozen teacher read from a checkpoint.

The student is ``self.network`` (the deployable network, saved under ``network.``), the teacher
``self.teacher``. The teacher is loaded in ``__init__`` (a missing checkpoint stops the run at
once, naming the config key and the stage that produces it), frozen (``callbacks.teacher_freeze``),
run under ``no_grad``, kept out of the optimizer, and by default left out of checkpoints
(``TeacherFreeze``); it is re-read from its own checkpoint when a run resumes.

Feature mimicking: ``FeaturePairs`` names which student block output imitates which teacher block
output; both networks return those features on request and ``feature_loss`` compares them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from callbacks.teacher_freeze import freeze_module
from trackers.errors import MissingFileError, SetupError
from trackers.methods.base import TrackingModule
from trackers.methods.optim import OptimizerConfig, build_optimizer
from trackers.models.checkpoints import load_checkpoint
from trackers.nn.losses import feature_mimic_loss
from trackers.types import TrackerOutput

TEACHER_PREFIX = "teacher."
TEACHER_CHECKPOINT_KEY = "model.init_args.teacher_checkpoint"


def require_checkpoint(path: str | None, key: str, produced_by: str) -> str:
    """``path`` if it names an existing file; else one actionable line naming ``key`` and its producer."""
    if not path:
        raise SetupError(f"{key} is not set: give the checkpoint {produced_by} (a .ckpt, or an official .pth.tar)")
    if not Path(path).is_file():
        raise MissingFileError(f"{key}: checkpoint {path} does not exist; it is {produced_by}")
    return str(path)


@dataclass
class FeaturePairs:
    """Student block ``student[k]`` imitates teacher block ``teacher[k]`` (outputs over the full token sequence)."""

    student: list[int] = field(default_factory=list)
    teacher: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.student) != len(self.teacher):
            raise SetupError(
                f"model.init_args.feature_pairs: {len(self.student)} student layers {self.student} for "
                f"{len(self.teacher)} teacher layers {self.teacher}; give one teacher layer per student layer"
            )

    def __bool__(self) -> bool:
        return bool(self.student)

    def after_removal(self, removed: Sequence[int]) -> FeaturePairs:
        """The same pairs once student blocks ``removed`` are dropped and the rest renumbered."""
        gone = sorted(set(removed))
        lost = [i for i in self.student if i in gone]
        if lost:
            raise SetupError(
                f"model.init_args.feature_pairs.student uses blocks {lost} that depth pruning removes; "
                f"pair surviving blocks with the teacher"
            )
        return FeaturePairs([i - sum(r < i for r in gone) for i in self.student], list(self.teacher))


class DistillationModule(TrackingModule):
    """Base of the distillation methods: student ``network``, frozen ``teacher``, optimizer over the student only.

    Subclasses implement ``training_step`` (via ``compute_losses``), ``build_tracker`` and, when the
    teacher's checkpoints need converting, ``load_teacher``.

    Args:
        network: the student.
        teacher: the teacher network (architecture); its weights come from ``teacher_checkpoint``.
        teacher_checkpoint: official ``.pth.tar`` or Lightning ``.ckpt`` of the teacher (required).
        teacher_stage: how the teacher checkpoint is produced (for the error when it is missing).
        feature_pairs: student/teacher block pairs for feature mimicking (empty: none).
        optimizer: AdamW + step decay of the student's parameters.
    """

    def __init__(
        self,
        network: nn.Module,
        teacher: nn.Module,
        teacher_checkpoint: str | None,
        teacher_stage: str,
        feature_pairs: FeaturePairs = FeaturePairs(),
        optimizer: OptimizerConfig = OptimizerConfig(),
        results_dir: str | None = None,
        resume_results: bool = True,
        tracker_name: str | None = None,
    ) -> None:
        super().__init__(results_dir=results_dir, resume_results=resume_results, tracker_name=tracker_name)
        self.teacher_checkpoint = require_checkpoint(teacher_checkpoint, TEACHER_CHECKPOINT_KEY, teacher_stage)
        self.network = network
        self.teacher = teacher
        self.feature_pairs = FeaturePairs(list(feature_pairs.student), list(feature_pairs.teacher))
        self.optimizer_config = optimizer
        self.load_teacher(self.teacher_checkpoint)
        freeze_module(self.teacher)

    def load_teacher(self, path: str) -> None:
        """Strict load of the teacher (suite names); families with official names override this."""
        load_checkpoint(self.teacher, path)

    @torch.no_grad()
    def teacher_forward(self, *args: Any, **kwargs: Any) -> TrackerOutput:
        """The teacher's output, without a graph (the teacher never learns)."""
        return self.teacher(*args, **kwargs)

    def feature_loss(self, student: TrackerOutput, teacher: TrackerOutput) -> Tensor:
        """Feature mimicking over ``feature_pairs`` (both outputs must carry those block features)."""
        pairs = self.feature_pairs
        return feature_mimic_loss([student.features[i] for i in pairs.student], [teacher.features[j] for j in pairs.teacher])

    def configure_optimizers(self) -> dict:
        return build_optimizer(self.network, self.optimizer_config)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints usually leave the teacher out (``TeacherFreeze``): keep the one read at construction."""
        state = checkpoint["state_dict"]
        if not any(k.startswith(TEACHER_PREFIX) for k in state):
            state.update(self.teacher.state_dict(prefix=TEACHER_PREFIX))
