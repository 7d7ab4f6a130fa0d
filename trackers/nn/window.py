"""Hann window penalty for centre-head trackers (spec compresstracker.md §1.7)."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor


def hann1d(n: int) -> Tensor:
    """Centred Hann window ``0.5 * (1 - cos(2*pi*k / (n + 1)))`` for k = 1..n: no zeros at the borders."""
    k = torch.arange(1, n + 1, dtype=torch.float64)
    return (0.5 * (1 - torch.cos(2 * math.pi * k / (n + 1)))).to(torch.float32)


@lru_cache(maxsize=16)
def _hann2d_cached(height: int, width: int, device: torch.device) -> Tensor:
    return (hann1d(height)[:, None] * hann1d(width)[None, :]).view(1, 1, height, width).to(device)


def hann2d(height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """(1, 1, H, W) outer product of two centred windows, cached per size and device (treat as read-only)."""
    return _hann2d_cached(height, width, torch.device(device))
