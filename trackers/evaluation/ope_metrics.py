"""OPE metrics as torchmetrics ``Metric``s, so scores stay correct when DDP ranks split the sequences.

Each ``update`` takes one finished sequence and stores what the protocol averages over: per-sequence
curves (pytracking, TrackingNet: sequence-weighted) or per-frame IoUs (got10k: frame-pooled). States
are tensors reduced with ``cat``/``sum``, so a rank with no sequence still syncs. The arithmetic is
the functional cores' (``metrics_*.py``); this module only accumulates.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from trackers.evaluation import metrics_got10k, metrics_pytracking, metrics_trackingnet

ArrayLike = Tensor | np.ndarray | list


def _numpy(x: ArrayLike | None) -> np.ndarray | None:
    if x is None:
        return None
    if isinstance(x, Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


class OPEMetric(Metric):
    """Shared ``update`` signature and error reporting; subclasses hold one protocol each.

    ``compute`` returns scalar tensors (ready for ``log_dict``); ``return_curves=True`` adds the
    dataset curves as 1-D tensors (for plots).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True
    convention: str = ""

    def __init__(self, return_curves: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.return_curves = return_curves

    def _add_rows(self, name: str, width: int, dtype: torch.dtype = torch.float32) -> None:
        self.add_state(name, default=torch.zeros(0, width, dtype=dtype), dist_reduce_fx="cat")

    def _append(self, name: str, row: np.ndarray, dtype: torch.dtype = torch.float32) -> None:
        new = torch.as_tensor(np.asarray(row), dtype=dtype, device=self.device).reshape(1, -1)
        setattr(self, name, torch.cat([getattr(self, name), new]))

    def update(
        self,
        pred_boxes: ArrayLike,
        gt_boxes: ArrayLike,
        visible: ArrayLike | None = None,
        image_size: tuple[int, int] | None = None,
        name: str | None = None,
    ) -> None:
        """Add one sequence: pred/gt (L, 4) frame xywh, ``visible`` (L,) flags, image (W, H)."""
        try:
            self._update_sequence(_numpy(pred_boxes), _numpy(gt_boxes), _numpy(visible), image_size)
        except ValueError as err:
            raise type(err)(f"sequence {name or '?'} ({self.convention}): {err}") from err

    @abstractmethod
    def _update_sequence(self, pred: np.ndarray, gt: np.ndarray, visible: np.ndarray | None,
                         image_size: tuple[int, int] | None) -> None:
        """The convention's per-sequence accumulation (states added in ``__init__``)."""

    def _finish(self, summary: dict, scalars: tuple[str, ...]) -> dict[str, Tensor]:
        out = {k: torch.tensor(float(summary[k]), dtype=torch.float64) for k in scalars}
        if self.return_curves:
            out.update({k: torch.as_tensor(np.asarray(v)) for k, v in summary.items() if k.endswith("curve")})
        return out


class PytrackingOPE(OPEMetric):
    """pytracking ``extract_results``: AUC, OP50, OP75, Precision, NormPrecision (percent), AO (fraction).

    ``dataset`` selects pytracking's per-dataset rules ('lasot': shorter results raise and absent
    frames get infinite errors); ``visible`` should be passed for LaSOT only, as pytracking does.
    """

    convention = "pytracking"

    def __init__(self, dataset: str = "lasot", exclude_invalid_frames: bool = False,
                 require_positive_xy: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.options = dict(dataset=dataset, exclude_invalid_frames=exclude_invalid_frames,
                            require_positive_xy=require_positive_xy)
        self._add_rows("success", len(metrics_pytracking.OVERLAP_THRESHOLDS))
        self._add_rows("precision", len(metrics_pytracking.CENTER_THRESHOLDS))
        self._add_rows("norm_precision", len(metrics_pytracking.NORM_CENTER_THRESHOLDS))
        self._add_rows("avg_overlap", 1, torch.float64)

    def _update_sequence(self, pred, gt, visible, image_size) -> None:
        curves = metrics_pytracking.sequence_curves(pred, gt, visible, **self.options)
        self._append("success", curves.success)
        self._append("precision", curves.precision)
        self._append("norm_precision", curves.norm_precision)
        self._append("avg_overlap", np.array([curves.avg_overlap]), torch.float64)

    def compute(self) -> dict[str, Tensor]:
        summary = metrics_pytracking.summarize(*(getattr(self, k).cpu().numpy()
                                                 for k in ("success", "precision", "norm_precision")))
        summary["avg_overlap"] = float(np.nanmean(self.avg_overlap.cpu().numpy())) if len(self.avg_overlap) else np.nan
        return self._finish(summary, ("AUC", "OP50", "OP75", "Precision", "NormPrecision", "avg_overlap",
                                      "num_sequences"))


class Got10kOPE(OPEMetric):
    """got10k toolkit: AO, SR0.5, SR0.75 (fractions) over frames pooled across sequences.

    ``visible`` may be the GOT-10k cover label or LaSOT visibility (frames with value > 0 count);
    ``image_size`` (W, H) enables the toolkit's clipping of both boxes.
    """

    convention = "got10k"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("ious", default=torch.zeros(0, dtype=torch.float64), dist_reduce_fx="cat")
        self.add_state("num_sequences", default=torch.tensor(0), dist_reduce_fx="sum")

    def _update_sequence(self, pred, gt, visible, image_size) -> None:
        ious = metrics_got10k.sequence_ious(pred, gt, visible, image_size)
        self.ious = torch.cat([self.ious, torch.as_tensor(ious, dtype=torch.float64, device=self.device)])
        self.num_sequences += 1

    def compute(self) -> dict[str, Tensor]:
        summary = metrics_got10k.summarize(self.ious.cpu().numpy())
        summary["num_sequences"] = int(self.num_sequences)
        return self._finish(summary, ("AO", "SR0.5", "SR0.75", "evaluated_frames", "num_sequences"))


class TrackingNetOPE(OPEMetric):
    """TrackingNet devkit: Success, Precision, NormPrecision as trapezoid areas, and Coverage (percent).

    All frames count, so ``visible`` and ``image_size`` are ignored.
    """

    convention = "trackingnet"

    def __init__(self, strict_success: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.strict_success = strict_success
        curves = {
            "success": metrics_trackingnet.SUCCESS_THRESHOLDS,
            "precision": metrics_trackingnet.PRECISION_THRESHOLDS,
            "norm_precision": metrics_trackingnet.NORM_PRECISION_THRESHOLDS,
        }
        for key, thresholds in curves.items():
            self._add_rows(key, len(thresholds), torch.float64)
        self.add_state("covered_frames", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("num_frames", default=torch.tensor(0), dist_reduce_fx="sum")

    def _update_sequence(self, pred, gt, visible, image_size) -> None:
        curves = metrics_trackingnet.sequence_curves(pred, gt, self.strict_success)
        for key in ("success", "precision", "norm_precision"):
            self._append(key, getattr(curves, key), torch.float64)
        self.covered_frames += curves.covered_frames
        self.num_frames += curves.num_frames

    def compute(self) -> dict[str, Tensor]:
        summary = metrics_trackingnet.summarize(
            *(getattr(self, k).cpu().numpy() for k in ("success", "precision", "norm_precision")),
            int(self.covered_frames), max(int(self.num_frames), 1),
        )
        return self._finish(summary, ("Success", "Precision", "NormPrecision", "Coverage", "num_sequences"))


OPE_METRICS: dict[str, type[OPEMetric]] = {
    cls.convention: cls for cls in (PytrackingOPE, Got10kOPE, TrackingNetOPE)
}


def build_ope_metric(convention: str = "pytracking", **kwargs: Any) -> OPEMetric:
    """The metric of one protocol by name ('pytracking', 'got10k', 'trackingnet')."""
    if convention not in OPE_METRICS:
        raise ValueError(f"convention={convention!r} is unknown; use one of {sorted(OPE_METRICS)}")
    return OPE_METRICS[convention](**kwargs)
