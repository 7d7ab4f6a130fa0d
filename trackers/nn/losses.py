"""Ground-truth losses and labels of centre-head trackers (spec compresstracker.md §1.5), and the
MixFormer family's box and distillation losses (spec mixformerv2.md §3-§4).

The loss weights (GIoU 2, L1 5, focal 1) are recipe values and live in the configs / methods.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from trackers.nn.box_ops import cxcywh_to_xyxy, paired_ciou_xyxy, paired_giou_xyxy

FOCAL_ALPHA = 2.0
FOCAL_BETA = 4.0
GAUSSIAN_MIN_OVERLAP = 0.7
LOG_CLAMP = 1e-12


def gaussian_radius(wh: Tensor, min_overlap: float = GAUSSIAN_MIN_OVERLAP) -> Tensor:
    """CornerNet radius, the widely copied "bug" version OSTrack uses: min of the three quadratic roots.

    ``wh`` (..., 2) in cells. The roots are ``(b + sqrt(b^2 - 4ac)) / 2`` without dividing by ``a``.
    """
    w, h = wh[..., 0], wh[..., 1]
    b1, c1 = h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + torch.sqrt(b2**2 - 16 * c2)) / 2
    b3, c3 = -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + torch.sqrt(b3**2 - 16 * min_overlap * c3)) / 2
    return torch.minimum(r1, torch.minimum(r2, r3))


def gaussian_heatmap(
    boxes_xywh: Tensor, feat_size: int, min_overlap: float = GAUSSIAN_MIN_OVERLAP
) -> Tensor:
    """CenterNet label (B, F, F) for normalised crop (x1, y1, w, h) boxes, vectorised over the batch.

    Centre cell = round(box centre * F); radius r = int(clamp(gaussian_radius, 0)); a Gaussian
    with sigma (2r + 1)/6 and peak 1 on the cells within r (Chebyshev) of the centre; values below
    float64 machine epsilon are zeroed like the official ``gaussian2D``.
    """
    box = boxes_xywh * feat_size
    wh = box[:, 2:]
    centre = (box[:, :2] + wh / 2).round()
    radius = gaussian_radius(wh, min_overlap).clamp(min=0).to(torch.int64).to(box.dtype)
    sigma = (2 * radius + 1) / 6
    cells = torch.arange(feat_size, device=box.device, dtype=box.dtype)
    dx = cells[None, None, :] - centre[:, 0, None, None]
    dy = cells[None, :, None] - centre[:, 1, None, None]
    r = radius[:, None, None]
    inside = (dx.abs() <= r) & (dy.abs() <= r)
    g = torch.exp(-(dx**2 + dy**2) / (2 * sigma[:, None, None] ** 2))
    g = torch.where(g < torch.finfo(torch.float64).eps, torch.zeros_like(g), g)
    return torch.where(inside, g, torch.zeros_like(g))


def focal_loss(pred: Tensor, target: Tensor, alpha: float = FOCAL_ALPHA, beta: float = FOCAL_BETA) -> Tensor:
    """CenterNet focal loss; positives are cells where the label is exactly 1.

    Normalised by the number of positives in the batch (the negative term alone when there are
    none), computed without a host sync.
    """
    pos = target.eq(1).to(pred.dtype)
    neg = target.lt(1).to(pred.dtype)
    pred = pred.clamp(min=LOG_CLAMP)
    pos_loss = (torch.log(pred) * (1 - pred) ** alpha * pos).sum()
    neg_loss = (torch.log(1 - pred) * pred**alpha * (1 - target) ** beta * neg).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1)


def giou_loss(pred_xyxy: Tensor, target_xyxy: Tensor) -> tuple[Tensor, Tensor]:
    """(mean(1 - GIoU), mean IoU) over aligned boxes.

    The official loss asserts x2 >= x1, y2 >= y1 for every box and falls back to 0 when that
    fails; here a degenerate batch gives a loss of 0 with no gradient, without a host sync or NaNs.
    """
    valid = (pred_xyxy[..., 2:] >= pred_xyxy[..., :2]).all() & (target_xyxy[..., 2:] >= target_xyxy[..., :2]).all()
    unit = pred_xyxy.new_tensor([0.0, 0.0, 1.0, 1.0])
    giou, iou = paired_giou_xyxy(torch.where(valid, pred_xyxy, unit), torch.where(valid, target_xyxy, unit))
    zero = pred_xyxy.new_zeros(())
    return torch.where(valid, (1 - giou).mean(), zero), torch.where(valid, iou.mean(), zero)


def l1_loss(pred_xyxy: Tensor, target_xyxy: Tensor) -> Tensor:
    """Mean absolute error over the B x 4 coordinates."""
    return F.l1_loss(pred_xyxy, target_xyxy)


# ---------------------------------------------------------------------------------------------
# MixFormer family (spec mixformerv2.md §3-§4): CIoU + L1 on boxes, and the distillation losses.
# ---------------------------------------------------------------------------------------------

MIXFORMER_CIOU_ASPECT_GATE = 0.5


def ciou_loss(pred_xyxy: Tensor, target_xyxy: Tensor) -> tuple[Tensor, Tensor]:
    """(mean(1 - CIoU), mean IoU): MixFormer's CIoU, clamped to [-1, 1], aspect term only where IoU > 0.5."""
    ciou, iou = paired_ciou_xyxy(pred_xyxy, target_xyxy, aspect_iou_gate=MIXFORMER_CIOU_ASPECT_GATE)
    return (1 - ciou.clamp(-1.0, 1.0)).mean(), iou.mean()


def box_regression_losses(pred_cxcywh: Tensor, gt_cxcywh: Tensor) -> dict[str, Tensor]:
    """CIoU and L1 of predicted crop boxes against the GT, both in xyxy, the GT clamped to [0, 1];
    ``iou`` (detached) is for logging."""
    pred = cxcywh_to_xyxy(pred_cxcywh)
    gt = cxcywh_to_xyxy(gt_cxcywh).clamp(0.0, 1.0)
    ciou, iou = ciou_loss(pred, gt)
    return {"ciou": ciou, "l1": l1_loss(pred, gt), "iou": iou.detach()}


def distribution_kl_loss(student_logits: Tensor, teacher_probs: Tensor) -> Tensor:
    """Forward KL(teacher || softmax(student)) over the last axis, ``batchmean`` per distribution and
    averaged over the K distributions of a sample: inputs (B, K, F), e.g. K = 4 box sides."""
    b, k = student_logits.shape[:2]
    kl = F.kl_div(F.log_softmax(student_logits, dim=-1), teacher_probs, reduction="sum")
    return kl / (b * k)


def feature_mimic_loss(student: Sequence[Tensor], teacher: Sequence[Tensor]) -> Tensor:
    """MSE between paired feature maps, one mean over every element of every pair (not a per-pair sum)."""
    if len(student) != len(teacher):
        raise ValueError(f"trackers/nn/losses.py: {len(student)} student features for {len(teacher)} teacher features")
    return F.mse_loss(torch.stack(list(student)), torch.stack(list(teacher)))
