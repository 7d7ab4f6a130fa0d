"""Success / precision plots as PNG, drawn on a bare Agg canvas (no display, no pyplot global state)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trackers.evaluation import metrics_got10k, metrics_pytracking, metrics_trackingnet

FIGURE_SIZE_INCHES = (6.4, 4.8)
DPI = 100


@dataclass(frozen=True)
class PlotSpec:
    """One plot of a protocol: which curve, on which thresholds, ranked by which score."""

    file_name: str
    curve_key: str
    thresholds: np.ndarray
    score_key: str
    xlabel: str
    ylabel: str
    y_scale: float = 1.0  # curves in fractions are drawn in percent
    score_format: str = "{:.1f}"


PLOT_SPECS: dict[str, tuple[PlotSpec, ...]] = {
    "pytracking": (
        PlotSpec("success.png", "success_curve", metrics_pytracking.OVERLAP_THRESHOLDS, "AUC",
                 "Overlap threshold", "Success rate [%]"),
        PlotSpec("precision.png", "precision_curve", metrics_pytracking.CENTER_THRESHOLDS, "Precision",
                 "Location error threshold [pixels]", "Distance precision [%]"),
        PlotSpec("norm_precision.png", "norm_precision_curve", metrics_pytracking.NORM_CENTER_THRESHOLDS,
                 "NormPrecision", "Normalised location error threshold", "Normalised precision [%]"),
    ),
    "got10k": (
        PlotSpec("success.png", "succ_curve", metrics_got10k.SUCCESS_THRESHOLDS, "AO",
                 "Overlap threshold", "Success rate [%]", 100.0, "{:.3f}"),
    ),
    "trackingnet": (
        PlotSpec("success.png", "success_curve", metrics_trackingnet.SUCCESS_THRESHOLDS, "Success",
                 "Overlap threshold", "Success rate [%]", 100.0),
        PlotSpec("precision.png", "precision_curve", metrics_trackingnet.PRECISION_THRESHOLDS, "Precision",
                 "Location error threshold [pixels]", "Distance precision [%]", 100.0),
        PlotSpec("norm_precision.png", "norm_precision_curve", metrics_trackingnet.NORM_PRECISION_THRESHOLDS,
                 "NormPrecision", "Normalised location error threshold", "Normalised precision [%]", 100.0),
    ),
}


def plot_curves(
    curves: dict[str, np.ndarray],
    scores: dict[str, float],
    spec: PlotSpec,
    path: str | Path,
    title: str = "",
) -> Path:
    """One line per tracker, legend ranked by score as in the papers' figures."""
    fig = Figure(figsize=FIGURE_SIZE_INCHES, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name in sorted(curves, key=lambda n: -scores[n]):
        ax.plot(spec.thresholds, np.asarray(curves[name]) * spec.y_scale, linewidth=2,
                label=f"{name} [{spec.score_format.format(scores[name])}]")
    ax.set(xlabel=spec.xlabel, ylabel=spec.ylabel, title=title,
           xlim=(spec.thresholds[0], spec.thresholds[-1]), ylim=(0, 100))
    ax.grid(True, linestyle=":")
    ax.legend(loc="best", fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def plot_reports(overall: dict[str, dict], convention: str, out_dir: str | Path, title: str = "") -> list[Path]:
    """Every plot of ``convention`` for the trackers' overall results (``{name: scores with curves}``)."""
    paths = []
    for spec in PLOT_SPECS[convention]:
        curves = {name: res[spec.curve_key] for name, res in overall.items()}
        scores = {name: float(res[spec.score_key]) for name, res in overall.items()}
        paths.append(plot_curves(curves, scores, spec, Path(out_dir) / spec.file_name, title))
    return paths
