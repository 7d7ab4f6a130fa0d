"""Optimiser and LR schedule of the official recipes: AdamW with a backbone LR multiplier, step decay."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class OptimizerConfig:
    """Official OSTrack-256 values by default; each experiment YAML states its own.

    ``lr_drop_epochs`` steps the LR by ``lr_gamma`` (StepLR, stepped per epoch).
    ``backbone_prefix`` selects the parameters that get ``lr * backbone_lr_multiplier``.
    """

    lr: float = 4e-4
    backbone_lr_multiplier: float = 0.1
    weight_decay: float = 1e-4
    lr_drop_epochs: int = 240
    lr_gamma: float = 0.1
    backbone_prefix: str = "backbone"


def parameter_groups(module: nn.Module, config: OptimizerConfig) -> list[dict]:
    """Trainable parameters split into non-backbone (``lr``) and backbone (``lr·multiplier``) groups."""
    head, backbone = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (backbone if name.startswith(config.backbone_prefix) else head).append(param)
    groups = [{"params": head, "lr": config.lr}]
    if backbone:
        groups.append({"params": backbone, "lr": config.lr * config.backbone_lr_multiplier})
    return [g for g in groups if g["params"]]


def build_optimizer(module: nn.Module, config: OptimizerConfig) -> dict:
    optimizer = torch.optim.AdamW(parameter_groups(module, config), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_drop_epochs, gamma=config.lr_gamma)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
