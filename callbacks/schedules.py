"""Every training schedule of the suite, as pure functions of the (1-based, official) epoch.

Callbacks call these and write the value onto the module; modules never read the epoch for them.
"""

from __future__ import annotations

import math


def ce_keep_rate(epoch: int, start_epoch: int, warmup_epochs: int, final_keep_ratio: float) -> float:
    """OSTrack's candidate-elimination warm-up (``adjust_keep_rate``): 1 before ``start_epoch``,
    cosine down to ``final_keep_ratio`` over ``warmup_epochs``, then constant."""
    if epoch < start_epoch:
        return 1.0
    if epoch >= start_epoch + warmup_epochs:
        return final_keep_ratio
    progress = (epoch - start_epoch) / warmup_epochs
    return final_keep_ratio + (1.0 - final_keep_ratio) * (math.cos(math.pi * progress) + 1.0) / 2.0


def layer_decay_gamma(epoch: int, decay_epochs: int, official: bool = True) -> float:
    """MixFormerV2 progressive depth pruning: residual scale of the blocks being removed.

    ``0.5 * (1 + cos(pi * t / m))`` with ``t = min(epoch, m)``, constant within an epoch. The
    official trainer uses ``t = min(epoch + 1, m)`` (1-based epoch), so gamma reaches 0 one epoch
    early, at epoch m - 1 (spec mixformerv2.md §4.2 table); the paper's version reaches 0 at m.
    """
    t = min(epoch + 1 if official else epoch, decay_epochs)
    return 0.5 * (1.0 + math.cos(math.pi * t / decay_epochs))
