"""Expectation over discretised positions, shared by the corner heads and the per-side bin head.

Both official heads place bin/cell i at its top-left edge ``i * stride`` and divide by
``F * stride``: the normalised position of bin i is ``i / F`` (no +0.5), maximum ``(F-1)/F``.
Stage-1 distillation relies on this: a corner-map row/column and a 1-D bin of the same F sit at
the same coordinate. Positions are built per call (an arange), not stored: the official heads keep
them out of the state dict and buffer list, and the manifests check both.
"""

from __future__ import annotations

import torch
from torch import Tensor


def bin_positions(num_bins: int, stride: float, device: torch.device | str | None = None) -> Tensor:
    """Normalised top-left positions ``(i * stride) / (F * stride)`` of the F bins, float32 (F,)."""
    cells = torch.arange(num_bins, dtype=torch.float64, device=device)
    return (cells * stride / (num_bins * stride)).to(torch.float32)


def expectation_1d(logits: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax over the last axis and its expected position; returns (position (...), probs (..., F))."""
    probs = logits.softmax(dim=-1)
    return (probs * positions).sum(dim=-1), probs


def soft_argmax_2d(score_map: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax over a (B, 1, F, F) map flattened row-major, and the expected (x, y).

    Returns (xy (B, 2) normalised, probabilities (B, F*F) with index ``row * F + col``).
    """
    b, _, h, w = score_map.shape
    probs = score_map.reshape(b, h * w).softmax(dim=1)
    grid = probs.view(b, h, w)
    x = (grid.sum(dim=1) * positions).sum(dim=-1)
    y = (grid.sum(dim=2) * positions).sum(dim=-1)
    return torch.stack([x, y], dim=1), probs
