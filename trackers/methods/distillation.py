"""What every distillation method shares: a trainable student and a frozen teacher read from a checkpoint.

The student is ``self.network`` (the deployable network, saved under ``network.``), the teacher
``self.teacher``. The teacher's weights are read when fitting starts (``setup("fit")``; a missing
checkpoint stops the run there with one line naming the config key and the stage that produces
it), never at construction: `lightning test` / `validate` of a distilled checkpoint need no
teacher file. The teacher is frozen by ``TeacherFreeze`` (which the module returns from
``configure_callbacks``, mode and checkpoint policy from ``teacher_mode`` / ``save_teacher``), run
under ``no_grad``, kept out of the optimizer, and by default left out of checkpoints.

Feature mimicking: ``FeaturePairs`` names which student block output imitates which teacher block
output; both networks return those features on request and ``feature_loss`` compares them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from trackers.errors import MissingFileError, SetupError
from trackers.freezing import FreezeMode
from trackers.methods.base import TrackingModule
from trackers.methods.teacher_freeze import TeacherFreeze
from trackers.models.checkpoints import load_weights
from trackers.nn.losses import feature_mimic_loss
from trackers.types import TrackerOutput, TrackingBatch

FamilyForward = Callable[..., TrackerOutput]  # (network, batch, **kwargs), e.g. center_forward, mixformer_forward

TEACHER_ATTRIBUTE = "teacher"
TEACHER_PREFIX = f"{TEACHER_ATTRIBUTE}."
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

    Subclasses implement ``compute_losses`` and ``build_tracker``; the teacher's weights are read by
    the one model-aware loader (``load_weights``), so no family needs its own teacher loading.

    Args:
        network: the student.
        teacher: the teacher network (architecture); its weights come from ``teacher_checkpoint``.
        teacher_checkpoint: official ``.pth.tar`` or Lightning ``.ckpt`` of the teacher (required to fit).
        teacher_stage: how the teacher checkpoint is produced (for the error when it is missing).
        feature_pairs: student/teacher block pairs for feature mimicking (empty: none).
        teacher_mode: ``eval`` pins the frozen teacher in eval mode; ``train`` lets it run in train
            mode like the official CompressTracker teacher (DropPath active).
        save_teacher: also write the teacher's weights into checkpoints.
        Further keyword arguments: ``TrackingModule``'s (optimizer, schedule, result folders).
    """

    def __init__(
        self,
        *,
        network: nn.Module,
        teacher: nn.Module,
        teacher_stage: str,
        teacher_checkpoint: str | None = None,
        feature_pairs: FeaturePairs = FeaturePairs(),
        teacher_mode: FreezeMode = "eval",
        save_teacher: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.network = network
        self.teacher = teacher
        self.teacher_checkpoint = teacher_checkpoint
        self.teacher_stage = teacher_stage
        self.feature_pairs = FeaturePairs(list(feature_pairs.student), list(feature_pairs.teacher))
        self.has_teacher_weights = False  # the teacher-side losses need them (read at fit start or from a checkpoint)
        self.teacher_mode: FreezeMode = teacher_mode
        self.save_teacher = save_teacher

    def configure_callbacks(self) -> list[L.Callback]:
        """The teacher's freezing, which this method always needs. Lightning replaces a ``TeacherFreeze``
        listed in ``trainer.callbacks`` with this one, so a listed one must not ask for something else."""
        own = TeacherFreeze(attributes=(TEACHER_ATTRIBUTE,), save_teacher=self.save_teacher, mode=self.teacher_mode)
        settings = lambda cb: (cb.attributes, cb.save_teacher, cb.mode)  # noqa: E731
        for listed in self.trainer.callbacks if self._trainer is not None else ():
            if isinstance(listed, TeacherFreeze) and settings(listed) != settings(own):
                raise SetupError(
                    f"trainer.callbacks TeacherFreeze {settings(listed)} differs from the method's {settings(own)}; "
                    f"drop it from the callbacks and set model.init_args.save_teacher / teacher_mode instead"
                )
        return [own]

    def setup(self, stage: str) -> None:
        """The teacher's weights: required when fitting starts (before a ``--ckpt_path`` restore); read
        for `validate` when the file is there; never needed by `test` (only the student tracks)."""
        super().setup(stage)
        if stage == "fit":
            path = require_checkpoint(self.teacher_checkpoint, TEACHER_CHECKPOINT_KEY, self.teacher_stage)
            self._load_teacher_weights(path)
        elif stage == "validate" and self.teacher_checkpoint and Path(self.teacher_checkpoint).is_file():
            self._load_teacher_weights(self.teacher_checkpoint)
        elif stage == "validate":
            rank_zero_warn(
                f"{TEACHER_CHECKPOINT_KEY} is not available: validation reports the student's ground-truth "
                f"losses only (unless the checkpoint holds the teacher)"
            )

    def _load_teacher_weights(self, path: str) -> None:
        load_weights(self.teacher, path)
        self.has_teacher_weights = True

    @torch.no_grad()
    def teacher_forward(self, family_forward: FamilyForward, batch: TrackingBatch, **kwargs: Any) -> TrackerOutput:
        """The teacher's output on ``batch`` through its family's batch call, without a graph (it never learns)."""
        return family_forward(self.teacher, batch, **kwargs)

    def feature_loss(self, student: TrackerOutput, teacher: TrackerOutput) -> Tensor:
        """Feature mimicking over ``feature_pairs`` (both outputs must carry those block features)."""
        pairs = self.feature_pairs
        return feature_mimic_loss([student.features[i] for i in pairs.student], [teacher.features[j] for j in pairs.teacher])

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints usually leave the teacher out: keep this module's teacher (read at fit start when
        resuming, at `validate` when its file is there; `test` runs only the student)."""
        state = checkpoint["state_dict"]
        if any(k.startswith(TEACHER_PREFIX) for k in state):
            self.has_teacher_weights = True  # saved with ``save_teacher``
        else:
            state.update(self.teacher.state_dict(prefix=TEACHER_PREFIX))
