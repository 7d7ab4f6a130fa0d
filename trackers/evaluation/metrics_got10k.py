"""OPE metrics of the got10k toolkit (``ExperimentGOT10k.report``): AO, SR0.5, SR0.75.

Spec tracking_ecosystem §4.4, fixtures/README.md B.3. Unlike pytracking, frames are pooled over all
sequences, frame 0 is excluded, only ``cover > 0`` frames count and both boxes are clipped to the
image, so these numbers are not comparable with pytracking's AUC.
"""

from __future__ import annotations

import numpy as np

from trackers.nn.box_ops import clip_boxes_to_image_xywh_np, paired_intersection_wh_xywh_np

SUCCESS_THRESHOLDS = np.linspace(0, 1, 101)


def frame_ious(pred: np.ndarray, gt: np.ndarray, image_size: tuple[float, float] | None = None) -> np.ndarray:
    """IoU per frame after clipping both boxes to the image (W, H); no clipping when size is None."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    if image_size is not None:
        width, height = image_size
        pred = clip_boxes_to_image_xywh_np(pred, width, height)
        gt = clip_boxes_to_image_xywh_np(gt, width, height)
    inter = np.clip(paired_intersection_wh_xywh_np(pred, gt), 0, None).prod(1)
    union = pred[:, 2:].prod(1) + gt[:, 2:].prod(1) - inter
    return np.clip(inter / (union + np.finfo(float).eps), 0.0, 1.0)


def sequence_ious(
    pred: np.ndarray,
    gt: np.ndarray,
    cover: np.ndarray | None = None,
    image_size: tuple[float, float] | None = None,
) -> np.ndarray:
    """IoUs of the frames the toolkit evaluates: 1..L-1 with ``cover > 0`` (all when cover is None).

    Extra prediction lines are dropped (the toolkit needs equal lengths); fewer lines raise.
    """
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    if len(pred) < len(gt):
        raise ValueError(f"got10k: {len(pred)} predicted boxes for {len(gt)} GT frames; track every frame")
    ious = frame_ious(pred[1 : len(gt)], gt[1:], image_size)
    if cover is None:
        return ious
    cover = np.asarray(cover).reshape(-1)
    if len(cover) != len(gt):
        raise ValueError(f"got10k: {len(cover)} cover labels for {len(gt)} GT frames")
    return ious[cover[1:] > 0]


def summarize(ious: np.ndarray) -> dict:
    """AO / SR / success curve of frame-pooled IoUs (concatenate all sequences first)."""
    ious = np.asarray(ious, dtype=np.float64).reshape(-1)
    if len(ious) == 0:
        nan = float("nan")
        return {"AO": nan, "SR0.5": nan, "SR0.75": nan, "succ_curve": np.full(101, nan), "evaluated_frames": 0}
    succ_curve = (ious[:, None] > SUCCESS_THRESHOLDS[None]).mean(0)
    return {
        "AO": float(ious.mean()),
        "SR0.5": float((ious > 0.5).mean()),
        "SR0.75": float(succ_curve[75]),
        "succ_curve": succ_curve,
        "evaluated_frames": int(len(ious)),
    }
