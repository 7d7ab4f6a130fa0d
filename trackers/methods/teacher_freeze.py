"""Keeps distillation teachers frozen: no gradients, out of the optimizer and (by default) the checkpoint.

The official MixFormerV2 code leaves its teacher's parameters trainable and relies on ``no_grad``
alone (spec mixformerv2.md §9 #24); here freezing is explicit (``trackers.freezing``) and survives
whatever the Trainer does: ``LightningModule.train()``, checkpoint restore, and every DDP rank (the
hooks run on each rank before the model is wrapped and the optimizer is built). ``mode`` eval (the
default) also pins the teacher in eval mode; mode train lets it run like the official
CompressTracker teacher (DropPath active, batch-statistics BatchNorm; spec compresstracker.md §7.8).

Distillation methods return this callback from ``configure_callbacks`` (settings from their
``teacher_mode`` / ``save_teacher`` arguments), so an experiment YAML need not list it; one that
does is replaced by the module's, as Lightning does for same-type callbacks. It lives here, with
the methods, because ``trackers`` never imports ``callbacks`` (``callbacks.teacher_freeze``
re-exports it for YAML class paths).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import lightning as L
from torch import nn

from trackers.errors import SetupError
from trackers.freezing import FREEZE_MODES, FreezeMode, freeze, is_frozen


class TeacherFreeze(L.Callback):
    """Freeze the module's teacher(s) on every rank and keep them out of optimizer and checkpoints.

    Args:
        attributes: names of the LightningModule attributes holding teachers.
        save_teacher: also write the teacher weights into checkpoints (by default they are dropped:
            a checkpoint is self-contained for evaluation without them, and fitting re-reads the
            teacher from its own checkpoint).
        mode: ``eval`` pins the teachers in eval mode; ``train`` lets them follow the module's mode.
    """

    def __init__(
        self, attributes: Sequence[str] = ("teacher",), save_teacher: bool = False, mode: FreezeMode = "eval"
    ) -> None:
        if mode not in FREEZE_MODES:
            raise SetupError(f"TeacherFreeze mode must be one of {FREEZE_MODES}, got {mode!r}")
        self.attributes = tuple(attributes)
        self.save_teacher = save_teacher
        self.mode: FreezeMode = mode

    def teachers(self, pl_module: L.LightningModule) -> Iterator[tuple[str, nn.Module]]:
        for name in self.attributes:
            teacher = getattr(pl_module, name, None)
            if not isinstance(teacher, nn.Module):
                raise SetupError(
                    f"TeacherFreeze: {type(pl_module).__name__} has no teacher module {name!r}; its teacher "
                    f"attributes are set by the method (configure_callbacks)"
                )
            yield name, teacher

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for _, teacher in self.teachers(pl_module):
            freeze(teacher, self.mode)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Fail fast if a custom ``configure_optimizers`` handed teacher parameters to an optimizer."""
        teacher_params = {id(p) for _, t in self.teachers(pl_module) for p in t.parameters()}
        for optimizer in trainer.optimizers:
            if any(id(p) in teacher_params for group in optimizer.param_groups for p in group["params"]):
                raise SetupError(
                    f"TeacherFreeze: {type(pl_module).__name__}.configure_optimizers passes teacher parameters to "
                    f"the optimizer; build it from the student network only"
                )

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for _, teacher in self.teachers(pl_module):
            if not is_frozen(teacher, self.mode):
                freeze(teacher, self.mode)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self.save_teacher:
            return
        prefixes = tuple(f"{name}." for name in self.attributes)
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(prefixes)]:
            del state[key]
