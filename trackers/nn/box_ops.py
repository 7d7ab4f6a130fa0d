"""Every box format conversion and overlap of the suite lives here, so no other file converts boxes by hand.

The frame <-> crop mapping (and the flips and clipping of that contract) lives with the crops in
``trackers.geometry.crops``: the two halves of one crop contract stay in one room.

Conventions (DESIGN.md "Contracts"):
- in a frame: ``xywh`` = (x, y, w, h) in pixels, 0-based, continuous (the datasets' format);
- in a crop: normalised ``cxcywh`` in [0, 1] of the crop side (what networks predict);
- ``xyxy`` = (x1, y1, x2, y2), used by losses and corner heads.

All tensor functions work on the last dimension and broadcast over leading ones.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def xywh_to_xyxy(b: Tensor) -> Tensor:
    x, y, w, h = b.unbind(-1)
    return torch.stack((x, y, x + w, y + h), -1)


def xyxy_to_xywh(b: Tensor) -> Tensor:
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack((x1, y1, x2 - x1, y2 - y1), -1)


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), -1)


def xyxy_to_cxcywh(b: Tensor) -> Tensor:
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), -1)


def cxcywh_to_xywh(b: Tensor) -> Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, w, h), -1)


def box_area_xyxy(b: Tensor) -> Tensor:
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def paired_iou_xyxy(a: Tensor, b: Tensor, eps: float = 0.0) -> tuple[Tensor, Tensor]:
    """Element-wise IoU of two aligned sets of xyxy boxes; returns (iou, union)."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area_xyxy(a) + box_area_xyxy(b) - inter
    return inter / (union + eps), union


def paired_giou_xyxy(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Element-wise generalised IoU (Rezatofighi et al.) of aligned xyxy boxes; returns (giou, iou)."""
    iou, union = paired_iou_xyxy(a, b)
    lt = torch.minimum(a[..., :2], b[..., :2])
    rb = torch.maximum(a[..., 2:], b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing, iou


def paired_ciou_xyxy(
    a: Tensor, b: Tensor, eps: float = 1e-7, aspect_iou_gate: float | None = None
) -> tuple[Tensor, Tensor]:
    """Element-wise complete IoU (Zheng et al.) of aligned xyxy boxes; returns (ciou, iou).

    ``aspect_iou_gate``: apply the aspect-ratio term only where IoU > gate (MixFormer's CIoU uses
    0.5, spec mixformerv2.md §3); None applies it everywhere.
    """
    iou, _ = paired_iou_xyxy(a, b, eps)
    ca, cb = xyxy_to_cxcywh(a), xyxy_to_cxcywh(b)
    lt = torch.minimum(a[..., :2], b[..., :2])
    rb = torch.maximum(a[..., 2:], b[..., 2:])
    diag = ((rb - lt) ** 2).sum(-1) + eps
    centre_dist = ((ca[..., :2] - cb[..., :2]) ** 2).sum(-1)
    v = (4 / math.pi**2) * (
        torch.atan(cb[..., 2] / (cb[..., 3] + eps)) - torch.atan(ca[..., 2] / (ca[..., 3] + eps))
    ) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
        if aspect_iou_gate is not None:
            alpha = alpha * (iou > aspect_iou_gate).to(alpha.dtype)
    return iou - centre_dist / diag - alpha * v, iou


# ---------------------------------------------------------------------------------------------
# NumPy helpers (data generation, evaluation protocols). The evaluation toolkits differ in their
# pixel convention: ``pixel_offset = -1`` gives the inclusive-pixel centre x + (w - 1) / 2
# (pytracking, LaSOT, got10k), ``+1`` the TrackingNet devkit's x + (w + 1) / 2.
# ---------------------------------------------------------------------------------------------


def cxcywh_to_xyxy_np(b: np.ndarray) -> np.ndarray:
    """``cxcywh_to_xyxy`` for arrays (same float operations, so the same values)."""
    centre, size = b[..., :2], b[..., 2:]
    return np.concatenate((centre - 0.5 * size, centre + 0.5 * size), -1)


def xyxy_to_xywh_np(b: np.ndarray) -> np.ndarray:
    """``xyxy_to_xywh`` for arrays (integer boxes stay integer)."""
    return np.concatenate((b[..., :2], b[..., 2:] - b[..., :2]), -1)


def box_centre_xywh_np(b: np.ndarray, pixel_offset: float = 0.0) -> np.ndarray:
    """(N, 4) xywh -> (N, 2) centres ``xy + (wh + pixel_offset) / 2``."""
    return b[..., :2] + 0.5 * (b[..., 2:] + pixel_offset)


def paired_intersection_wh_xywh_np(a: np.ndarray, b: np.ndarray, pixel_inclusive: bool = False) -> np.ndarray:
    """(N, 2) signed intersection width/height of aligned xywh boxes (negative = disjoint).

    ``pixel_inclusive`` uses the MATLAB form min(x + w - 1) - max(x) + 1, which equals the
    continuous overlap; toolkits that use it are reproduced to the last bit with it.
    """
    one = 1.0 if pixel_inclusive else 0.0
    lo = np.maximum(a[..., :2], b[..., :2])
    hi = np.minimum(a[..., :2] + a[..., 2:] - one, b[..., :2] + b[..., 2:] - one)
    return hi - lo + one


def clip_boxes_to_image_xywh_np(b: np.ndarray, width: float, height: float) -> np.ndarray:
    """got10k toolkit clipping of (N, 4) xywh boxes: x in [0, W], then w in [0, W - x] (same for y, h).

    A box sticking out on the left is shifted, not cut; negative sizes become 0.
    """
    x = np.clip(b[..., 0], 0, width)
    y = np.clip(b[..., 1], 0, height)
    w = np.clip(b[..., 2], 0, width - x)
    h = np.clip(b[..., 3], 0, height - y)
    return np.stack([x, y, w, h], -1)
