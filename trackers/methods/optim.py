"""Optimizer and LR schedule, injected the LightningCLI way, on the project's parameter groups.

A method takes ``optimizer: OptimizerCallable`` and ``lr_scheduler: LRSchedulerCallable``
(``class_path`` + ``init_args`` in YAML, so an ablation swaps AdamW + StepLR for any other pair
without code) and ``param_groups: ParamGroups``: the parameters under ``backbone_prefix`` train at
``lr * backbone_lr_multiplier``, the rest at ``lr``. The defaults are the official OSTrack-256
recipe: AdamW (lr 4e-4, weight decay 1e-4), StepLR by 0.1 after 240 epochs, multiplier 0.1
(``TrackingModule``'s signature holds them as lambdas, which jsonargparse reads as ``class_path``
+ ``init_args``: ``--print_config`` shows them and a fragment may override a single init arg).
"""

from __future__ import annotations

from dataclasses import dataclass

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

SCHEDULER_INTERVAL = "epoch"  # the official recipes step their schedules per epoch


@dataclass
class ParamGroups:
    """``backbone_prefix`` selects the parameters that get ``lr * backbone_lr_multiplier``."""

    backbone_lr_multiplier: float = 0.1
    backbone_prefix: str = "backbone"


def parameter_groups(module: nn.Module, groups: ParamGroups) -> tuple[list[dict], list[float]]:
    """Trainable parameters split into non-backbone and backbone groups, with each group's LR multiplier."""
    head, backbone = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (backbone if name.startswith(groups.backbone_prefix) else head).append(param)
    split = [({"params": head}, 1.0), ({"params": backbone}, groups.backbone_lr_multiplier)]
    kept = [(group, scale) for group, scale in split if group["params"]]
    return [g for g, _ in kept], [s for _, s in kept]


def build_optimizer(
    module: nn.Module, optimizer: OptimizerCallable, lr_scheduler: LRSchedulerCallable, groups: ParamGroups
) -> dict:
    """The optimizer over ``module``'s trainable parameters, each group's LR scaled before the schedule
    is made (so the scheduler's ``initial_lr`` is the scaled one), and its per-epoch schedule."""
    param_groups, scales = parameter_groups(module, groups)
    built = optimizer(param_groups)
    for group, scale in zip(built.param_groups, scales):
        group["lr"] = group["lr"] * scale
    scheduler = lr_scheduler(built)
    return {"optimizer": built, "lr_scheduler": {"scheduler": scheduler, "interval": SCHEDULER_INTERVAL}}
