"""The one freezing policy: parameters that never learn, in one of two modes.

Frozen parameters get ``requires_grad = False`` (Lightning's ``BaseFinetuning.freeze`` semantics), so
they receive no gradients and ``parameter_groups`` keeps them out of the optimizer. The mode says
what happens to the module's train/eval state:

- ``eval`` (the default): the module is pinned in eval mode (its ``train`` is shadowed, so
  ``LightningModule.train()`` at every epoch start cannot flip it back), DropPath and dropout are
  off, BatchNorm uses and keeps its running statistics. The clean teacher.
- ``train``: the module follows its parent's mode, so during training DropPath is active and
  BatchNorm normalises with batch statistics and keeps updating its running statistics. The
  official CompressTracker teacher runs like this (spec compresstracker.md §7.8); the fading blocks
  of depth pruning and the frozen backbone of score-head training do too.

Users: ``callbacks.teacher_freeze.TeacherFreeze`` (teachers), ``callbacks.layer_decay`` (fading
blocks), ``ScoreHeadTraining`` (all but the score head), ``TrackingModule`` (dead timm parameters).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Literal

from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn

FreezeMode = Literal["eval", "train"]
FREEZE_MODES: tuple[FreezeMode, ...] = ("eval", "train")


def _train_stays_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    """Stands in for a frozen module's ``train``: any ``train(mode)`` call leaves it (and its children) in eval."""
    return nn.Module.train(module, False)


def _check_mode(mode: str) -> None:
    if mode not in FREEZE_MODES:
        raise ValueError(f"freeze mode must be one of {FREEZE_MODES}, got {mode!r}")


def freeze_parameters(params: Iterable[nn.Parameter]) -> None:
    """requires_grad False on loose parameters (those not owned by a module of their own)."""
    for param in params:
        param.requires_grad_(False)


def freeze(module: nn.Module, mode: FreezeMode = "eval") -> nn.Module:
    """Freeze every parameter of ``module``; ``mode`` eval pins it in eval mode, train leaves it following its parent."""
    _check_mode(mode)
    if mode == "eval":
        BaseFinetuning.freeze(module, train_bn=False)  # BatchNorm: frozen and no running-stat updates
        module.train = partial(_train_stays_eval, module)  # instance attribute shadows nn.Module.train
        module.eval()
    else:
        module.requires_grad_(False)  # BatchNorm keeps batch statistics in train mode (official teacher)
        module.__dict__.pop("train", None)  # an earlier eval pin is lifted
    return module


def is_frozen(module: nn.Module, mode: FreezeMode = "eval") -> bool:
    """No trainable parameter, and for mode eval: pinned in eval mode."""
    _check_mode(mode)
    no_grad = not any(p.requires_grad for p in module.parameters())
    if mode == "train":
        return no_grad
    return no_grad and not module.training and "train" in module.__dict__
