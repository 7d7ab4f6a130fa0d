"""OPE metrics as pytracking's ``extract_results`` computes them: the numbers papers report.

Spec tracking_ecosystem §4.2, fixtures/README.md B.3. Per-frame errors are float64; the curves are
float32 and averaged with torch like pytracking's accumulators, so scores match its printout exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trackers.nn.box_ops import box_centre_xywh_np, paired_intersection_wh_xywh_np

OVERLAP_THRESHOLDS = np.arange(21, dtype=np.float64) * 0.05  # i * step, as torch.arange builds them
CENTER_THRESHOLDS = np.arange(51, dtype=np.float64)
NORM_CENTER_THRESHOLDS = np.arange(51, dtype=np.float64) / 100.0
SCORE_INDEX_PRECISION = 20  # 20 px
SCORE_INDEX_NORM_PRECISION = 20  # 0.20 of the GT size
SCORE_INDEX_OP50 = 10  # OVERLAP_THRESHOLDS[10] = 0.50
SCORE_INDEX_OP75 = 15  # OVERLAP_THRESHOLDS[15] = 0.75


class InvalidResultsError(ValueError):
    """The tracker output is one pytracking refuses to evaluate (NaN, negative size, too short)."""


@dataclass(frozen=True)
class FrameErrors:
    """Per-frame measures after every pytracking rule; invalid frames carry the sentinel values."""

    iou: np.ndarray  # (L,) float64, -1 on invalid frames
    center_error: np.ndarray  # (L,) float64 px, +inf on invalid frames
    norm_center_error: np.ndarray  # (L,) float64, -1 on invalid, +inf on absent LaSOT frames
    valid: np.ndarray  # (L,) bool


@dataclass(frozen=True)
class SequenceCurves:
    """One sequence's curves as fractions (float32) and its mean IoU over valid frames."""

    success: np.ndarray  # (21,)
    precision: np.ndarray  # (51,)
    norm_precision: np.ndarray  # (51,)
    avg_overlap: float


def prepare_predictions(pred: np.ndarray, gt: np.ndarray, dataset: str = "lasot") -> np.ndarray:
    """Apply the sanity check, zero-size replacement, length rule and ``pred[0] = gt[0]``."""
    pred = np.array(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64)
    if np.isnan(pred).any() or (pred[:, 2:] < 0).any():
        raise InvalidResultsError("Error: Invalid results (NaN or negative width/height in the predictions)")
    if np.isnan(gt).any() and dataset != "uav":
        raise InvalidResultsError("NaN in the ground truth")
    n = len(gt)
    if len(pred) < n and dataset == "lasot":
        raise InvalidResultsError(f"Mis-match in tracker prediction and GT lengths ({len(pred)} < {n} lines)")
    pred = _replace_zero_size(pred[:n], gt[: len(pred)])
    pred = np.concatenate([pred, np.zeros((n - len(pred), 4))])  # other datasets: zero-pad after replacing
    pred[0] = gt[0]
    return pred


def _replace_zero_size(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Each zero-size box (i >= 1) takes the last earlier box that was kept: the sequential cascade.

    Vectorised as a forward fill of the indices of kept frames; frame 0 is always kept.
    """
    if len(pred) == 0:
        return pred
    replace = (pred[:, 2:] == 0).any(1) & ~np.isnan(gt).any(1)
    replace[0] = False
    source = np.where(replace, 0, np.arange(len(pred)))
    return pred[np.maximum.accumulate(source)]


def frame_errors(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray | None = None,
    dataset: str = "lasot",
    require_positive_xy: bool = True,
) -> FrameErrors:
    """Per-frame IoU, centre error and normalised centre error (``calc_seq_err_robust``).

    ``require_positive_xy=False`` is the OSTrack/MixFormerV2 copy of the analysis, which checks only
    w > 0 and h > 0 for validity.
    """
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    pred = prepare_predictions(pred, gt, dataset)
    checked = gt if require_positive_xy else gt[:, 2:]
    valid = (checked > 0).all(1)
    if visible is not None:
        visible = np.asarray(visible, dtype=bool).reshape(-1)
        if len(visible) != len(gt):
            raise ValueError(f"visible has {len(visible)} flags for {len(gt)} GT boxes")
        valid &= visible

    with np.errstate(divide="ignore", invalid="ignore"):
        c_pred, c_gt = box_centre_xywh_np(pred, -1.0), box_centre_xywh_np(gt, -1.0)
        center = np.sqrt(((c_pred - c_gt) ** 2).sum(1))
        norm_center = np.sqrt(((c_pred / gt[:, 2:] - c_gt / gt[:, 2:]) ** 2).sum(1))
        inter = np.clip(paired_intersection_wh_xywh_np(pred, gt, pixel_inclusive=True), 0, None).prod(1)
        iou = inter / (pred[:, 2:].prod(1) + gt[:, 2:].prod(1) - inter)

    center[~valid] = np.inf if dataset != "uav" else -1.0
    norm_center[~valid] = -1.0  # counts as a hit for normalised precision: pytracking's quirk
    iou[~valid] = -1.0
    if dataset == "lasot" and visible is not None:
        center[~visible] = np.inf
        norm_center[~visible] = np.inf
    if np.isnan(iou).any():
        raise InvalidResultsError("NaNs in calculated overlap")
    return FrameErrors(iou, center, norm_center, valid)


def sequence_curves(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray | None = None,
    *,
    dataset: str = "lasot",
    exclude_invalid_frames: bool = False,
    require_positive_xy: bool = True,
) -> SequenceCurves:
    """Success / precision / normalised-precision curves of one sequence (fractions, float32)."""
    err = frame_errors(pred, gt, visible, dataset, require_positive_xy)
    n = int(err.valid.sum()) if exclude_invalid_frames else len(err.iou)
    if n <= 0:
        raise InvalidResultsError("Seq length zero (no valid frame to evaluate)")
    with np.errstate(invalid="ignore"):
        avg_overlap = float(err.iou[err.valid].mean()) if err.valid.any() else float("nan")

    def curve(values: np.ndarray, thresholds: np.ndarray, above: bool) -> np.ndarray:
        hits = values[:, None] > thresholds[None] if above else values[:, None] <= thresholds[None]
        return hits.sum(0).astype(np.float32) / np.float32(n)

    return SequenceCurves(
        success=curve(err.iou, OVERLAP_THRESHOLDS, above=True),
        precision=curve(err.center_error, CENTER_THRESHOLDS, above=False),
        norm_precision=curve(err.norm_center_error, NORM_CENTER_THRESHOLDS, above=False),
        avg_overlap=avg_overlap,
    )


def summarize(success: np.ndarray, precision: np.ndarray, norm_precision: np.ndarray) -> dict:
    """Dataset scores from stacked per-sequence curves (S, 21) / (S, 51) / (S, 51), in percent.

    Sequences are weighted equally; AUC is the 21-point curve mean (a perfect tracker scores 95.24).
    Averaged with torch float32 as pytracking does, which reproduces its printout bit for bit.
    """
    success_curve, precision_curve, norm_curve = (
        torch.as_tensor(np.asarray(c), dtype=torch.float32).mean(0) * 100.0
        for c in (success, precision, norm_precision)
    )
    return {
        "AUC": float(success_curve.mean(-1)),
        "OP50": float(success_curve[SCORE_INDEX_OP50]),
        "OP75": float(success_curve[SCORE_INDEX_OP75]),
        "Precision": float(precision_curve[SCORE_INDEX_PRECISION]),
        "NormPrecision": float(norm_curve[SCORE_INDEX_NORM_PRECISION]),
        "success_curve": success_curve.numpy(),
        "precision_curve": precision_curve.numpy(),
        "norm_precision_curve": norm_curve.numpy(),
        "num_sequences": int(np.shape(success)[0]),
    }


def sequence_scores(curves: SequenceCurves) -> dict:
    """The per-sequence entry of pytracking's report: the dataset scores of one sequence plus AO."""
    scores = summarize(curves.success[None], curves.precision[None], curves.norm_precision[None])
    del scores["num_sequences"]
    return {**scores, "avg_overlap": curves.avg_overlap}
