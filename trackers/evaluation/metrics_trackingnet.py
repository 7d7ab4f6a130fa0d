"""OPE metrics of the TrackingNet devkit (``metrics.evaluate``), the evaluation server's code.

Spec tracking_ecosystem §4.5, fixtures/README.md B.3. All three scores are trapezoid areas over
21-point curves, every number is rounded half-to-even first, and all frames count (no absence
flags). Comparisons with NaN (0/0 IoU, missing lines) are false, i.e. misses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trackers.nn.box_ops import box_centre_xywh_np, paired_intersection_wh_xywh_np

SUCCESS_THRESHOLDS = np.linspace(0, 1, 21)
PRECISION_THRESHOLDS = np.linspace(0, 50, 21)
NORM_PRECISION_THRESHOLDS = np.linspace(0, 0.5, 21)
AREA_AXIS = np.linspace(0, 1, 21)  # every curve is integrated over a unit-width axis


@dataclass(frozen=True)
class SequenceCurves:
    """One sequence's 21-point curves (fractions) and its covered-frame count."""

    success: np.ndarray  # (21,)
    precision: np.ndarray  # (21,)
    norm_precision: np.ndarray  # (21,)
    covered_frames: int  # frames whose rounded x + y + w + h > 0
    num_frames: int


def sequence_curves(pred: np.ndarray, gt: np.ndarray, strict_success: bool = False) -> SequenceCurves:
    """Curves of one sequence. ``strict_success`` uses IoU > t as the devkit did before its ``>=`` fix.

    The current devkit counts IoU >= t, so an exact frame hits at t = 1 and an identity tracker
    scores 100 (97.5 with ``strict_success``).
    """
    gt = np.round(np.asarray(gt, dtype=np.float64).reshape(-1, 4))
    pred = np.round(np.asarray(pred, dtype=np.float64).reshape(-1, 4))
    n = len(gt)
    pred = np.concatenate([pred[:n], np.full((max(n - len(pred), 0), 4), np.nan)])  # pandas index alignment
    pred[0] = gt[0]

    with np.errstate(divide="ignore", invalid="ignore"):
        inter = np.clip(np.round(paired_intersection_wh_xywh_np(pred, gt, pixel_inclusive=True)), 0, None).prod(1)
        iou = inter / (gt[:, 2:].prod(1) + pred[:, 2:].prod(1) - inter)
        offset = box_centre_xywh_np(gt, 1.0) - box_centre_xywh_np(pred, 1.0)
        distance = np.sqrt((offset**2).sum(1))
        norm_distance = np.sqrt(((offset / gt[:, 2:]) ** 2).sum(1))

    hit_iou = iou[:, None] > SUCCESS_THRESHOLDS if strict_success else iou[:, None] >= SUCCESS_THRESHOLDS
    return SequenceCurves(
        success=hit_iou.sum(0) / n,
        precision=(distance[:, None] <= PRECISION_THRESHOLDS).sum(0) / n,
        norm_precision=(norm_distance[:, None] <= NORM_PRECISION_THRESHOLDS).sum(0) / n,
        covered_frames=int((pred.sum(1) > 0).sum()),
        num_frames=n,
    )


def curve_area(curve: np.ndarray) -> float:
    """Trapezoid area over the unit axis, in percent (what the server reports)."""
    return float((np.diff(AREA_AXIS) * (curve[1:] + curve[:-1]) / 2.0).sum() * 100.0)


def summarize(
    success: np.ndarray,
    precision: np.ndarray,
    norm_precision: np.ndarray,
    covered_frames: np.ndarray,
    num_frames: np.ndarray,
) -> dict:
    """Scores from stacked per-sequence curves (S, 21); Coverage is pooled over all frames."""
    curves = {k: np.asarray(v, dtype=np.float64).mean(0) for k, v in
              (("success", success), ("precision", precision), ("norm_precision", norm_precision))}
    return {
        "Success": curve_area(curves["success"]),
        "Precision": curve_area(curves["precision"]),
        "NormPrecision": curve_area(curves["norm_precision"]),
        "Coverage": float(np.sum(covered_frames) / np.sum(num_frames) * 100.0),
        "success_curve": curves["success"],
        "precision_curve": curves["precision"],
        "norm_precision_curve": curves["norm_precision"],
        "num_sequences": int(np.shape(success)[0]),
    }


def sequence_scores(curves: SequenceCurves) -> dict:
    """The scores of a single-sequence submission."""
    scores = summarize(curves.success[None], curves.precision[None], curves.norm_precision[None],
                       np.array([curves.covered_frames]), np.array([curves.num_frames]))
    del scores["num_sequences"]
    return scores
