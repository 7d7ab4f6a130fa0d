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


def replacement_probability(
    epoch: int,
    max_epochs: int,
    p_init: float = 0.5,
    warmup_fraction: float = 0.1,
    end_fraction: float = 0.1,
    slope: str = "official",
    progressive: bool = True,
) -> float:
    """CompressTracker's progressive replacement: the probability that a stage runs its *student* block.

    Official ``set_bernoulli(epoch, max_epoch)`` (spec compresstracker.md §2.5), 1-based ``epoch``:
    ``w = floor(max_epochs * warmup_fraction)``, ``e = floor(max_epochs * end_fraction)``;
    ``p_init`` while ``epoch - 1 <= w``; ``p_init + (1 - p_init) * (epoch - w) / (max_epochs - w - e)``
    while ``w < epoch - 1 < max_epochs - e``; 1 once ``epoch - 1 >= max_epochs - e``. The tests use
    ``epoch - 1`` and the ramp ``epoch``, so p already reaches 1 at epoch ``max_epochs - e``.
    ``slope='paper'`` takes Eq. 1's ramp slope ``p_init`` instead of ``1 - p_init`` (equal at 0.5;
    clamped at 1); ``progressive=False`` keeps ``p_init`` throughout (the paper's constant-p ablation).
    """
    if not 0.0 < p_init <= 1.0:
        raise ValueError(f"replacement p_init must be in (0, 1], got {p_init}")
    if slope not in ("official", "paper"):
        raise ValueError(f"replacement slope must be 'official' or 'paper', got {slope!r}")
    if not progressive:
        return p_init
    warm = math.floor(round(max_epochs * warmup_fraction, 9))  # 500 * 0.1 -> 50, 37 * 0.1 -> 3 (the code's //)
    end = math.floor(round(max_epochs * end_fraction, 9))
    if warm < epoch - 1 < max_epochs - end:
        rise = (1.0 - p_init) if slope == "official" else p_init
        return min(1.0, rise * (epoch - warm) / (max_epochs - warm - end) + p_init)
    if epoch - 1 >= max_epochs - end:
        return 1.0
    return p_init
