"""Keeps distillation teachers frozen: no gradients, eval mode, out of the optimizer and the checkpoint.

The official MixFormerV2 code leaves its teacher's parameters trainable and relies on ``no_grad``
alone (spec mixformerv2.md §9 #24); here freezing is explicit and survives whatever the Trainer
does: ``LightningModule.train()`` (the teacher's own ``train`` is replaced so it stays in eval,
BatchNorm statistics and DropPath included), checkpoint restore, and every DDP rank (the hooks run
on each rank before the model is wrapped and the optimizer is built).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import lightning as L
from torch import nn

from trackers.errors import SetupError


def _train_stays_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    """Stands in for a frozen module's ``train``: any ``train(mode)`` call leaves it (and its children) in eval."""
    return nn.Module.train(module, False)


def freeze_module(module: nn.Module) -> nn.Module:
    """requires_grad False on every parameter, eval mode now and after any later ``train()`` call."""
    module.requires_grad_(False)
    module.train = partial(_train_stays_eval, module)  # instance attribute shadows nn.Module.train
    return module.eval()


def is_frozen(module: nn.Module) -> bool:
    return not module.training and not any(p.requires_grad for p in module.parameters())


class TeacherFreeze(L.Callback):
    """Freeze the module's teacher(s) on every rank and keep them out of optimizer and checkpoints.

    Args:
        attributes: names of the LightningModule attributes holding teachers.
        save_teacher: also write the teacher weights into checkpoints (by default they are dropped:
            the teacher is re-read from its own checkpoint when the module is built).
    """

    def __init__(self, attributes: Sequence[str] = ("teacher",), save_teacher: bool = False) -> None:
        self.attributes = tuple(attributes)
        self.save_teacher = save_teacher

    def teachers(self, pl_module: L.LightningModule) -> Iterator[tuple[str, nn.Module]]:
        for name in self.attributes:
            teacher = getattr(pl_module, name, None)
            if not isinstance(teacher, nn.Module):
                raise SetupError(
                    f"TeacherFreeze: {type(pl_module).__name__} has no teacher module {name!r}; set "
                    f"trainer.callbacks TeacherFreeze.init_args.attributes to its teacher attribute names"
                )
            yield name, teacher

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for _, teacher in self.teachers(pl_module):
            freeze_module(teacher)

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
            if not is_frozen(teacher):
                freeze_module(teacher)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self.save_teacher:
            return
        prefixes = tuple(f"{name}." for name in self.attributes)
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(prefixes)]:
            del state[key]
