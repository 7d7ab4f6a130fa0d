"""ImageNet normalisation of RGB uint8 crops, shared by training (in the workers or after the transfer)
and tracking."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np
import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_image(image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    brightness: float = 1.0) -> Tensor:
    """ImageNet-normalised float32 (3, S, S) tensor of an RGB uint8 (S, S, 3) image.

    ``brightness`` first multiplies the [0, 1] image and clamps it (the training brightness
    jitter). Each output value depends only on (channel, uint8 value), so one 256-entry table per
    channel, applied plane by plane straight into the channel-first output, gives the float
    pipeline's exact values at a fraction of its cost.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise TypeError(f"normalize_image expects an RGB uint8 (H, W, 3) array, got {image.dtype} {image.shape}")
    tables = _lookup_tables(tuple(map(float, mean)), tuple(map(float, std)), float(brightness))
    out = np.empty((3, *image.shape[:2]), np.float32)
    for c, plane in enumerate(cv2.split(image)):
        cv2.LUT(plane, tables[c].reshape(1, 256), dst=out[c])
    return torch.from_numpy(out)


@lru_cache(maxsize=64)
def _lookup_tables(mean: tuple[float, ...], std: tuple[float, ...], brightness: float) -> np.ndarray:
    """(3, 256) float32 normalised value of each uint8 level per channel; cached (a tracker asks every
    frame with the same arguments), read-only."""
    levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
    if brightness != 1.0:
        levels = np.clip(levels * np.float32(brightness), 0.0, 1.0)
    m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    tables = np.ascontiguousarray(((levels[:, None] - m) / s).T, dtype=np.float32)
    tables.flags.writeable = False
    return tables


def normalize_uint8(images: Tensor, brightness: Tensor | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """ImageNet-normalised float32 of uint8 ``(..., 3, H, W)`` images, on their device.

    The batched twin of ``normalize_image``, for pipelines that ship uint8 crops (4x less to copy
    between processes and to the GPU) and normalise after the transfer. ``brightness`` ``(...)``
    multiplies each [0, 1] image and clamps it, in the same float32 steps, so the values equal the
    worker-side table's.
    """
    if images.dtype != torch.uint8 or images.dim() < 3 or images.shape[-3] != 3:
        raise TypeError(f"normalize_uint8 expects uint8 (..., 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
    x = images.to(torch.float32).div_(255.0)
    if brightness is not None:
        x = (x * brightness.to(device=x.device, dtype=torch.float32)[..., None, None, None]).clamp_(0.0, 1.0)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device)[:, None, None]
    s = torch.tensor(std, dtype=torch.float32, device=x.device)[:, None, None]
    return x.sub_(m).div_(s)
