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


FRONT_COLOR, OFF_FRONT_COLOR = "#d62728", "#7f7f7f"  # the front in red, dominated points in grey
LOSS_COLOR, GAIN_COLOR = "#d62728", "#2ca02c"  # per-sequence differences: below / above the reference
LOG_FPS_SPAN = 10.0  # FPS axis goes logarithmic when the fastest point is this many times the slowest
LABEL_CLEARANCE = 0.04  # markers closer than this share of both axis spans get their labels apart
MAX_BAR_LABELS = 60  # beyond this many bars the sequence names are left off (unreadable)


def _new_axes(size: tuple[float, float] = FIGURE_SIZE_INCHES):
    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _label_offsets(xs: list[float], ys: list[float], log_x: bool) -> list[tuple[int, int]]:
    """Text offsets (points): above the marker, or below it when a higher marker sits close by."""
    span_x = (np.log(max(xs)) - np.log(min(xs))) if log_x else (max(xs) - min(xs))
    span_y = max(ys) - min(ys)
    pos = [((np.log(x) if log_x else x) / (span_x or 1.0), y / (span_y or 1.0)) for x, y in zip(xs, ys)]

    def below(i: int) -> bool:
        x, y = pos[i]
        return any(abs(x - x2) < LABEL_CLEARANCE and abs(y - y2) < LABEL_CLEARANCE and (y2, -j) > (y, -i)
                   for j, (x2, y2) in enumerate(pos) if j != i)

    return [(5, -11) if below(i) else (5, 4) for i in range(len(pos))]


def plot_pareto(points, path: str | Path, score_label: str = "AUC", title: str = "") -> Path:
    """Score vs FPS, one numbered marker per point and the numbers' key beside the axes (long labels of
    points a few FPS apart would overprint each other); the front as red markers joined by a line.

    ``points`` are ``trackers.evaluation.pareto.ParetoPoint``s (label, score, fps, on_front).
    """
    fig, ax = _new_axes((FIGURE_SIZE_INCHES[0] * 1.5, FIGURE_SIZE_INCHES[1]))
    fps = [p.fps for p in points]
    log_x = bool(fps) and min(fps) > 0 and max(fps) / min(fps) >= LOG_FPS_SPAN
    for number, (p, offset) in enumerate(zip(points, _label_offsets(fps, [p.score for p in points], log_x)), 1):
        ax.scatter(p.fps, p.score, s=60 if p.on_front else 36, zorder=3,
                   color=FRONT_COLOR if p.on_front else OFF_FRONT_COLOR, marker="o" if p.on_front else "x")
        ax.annotate(str(number), (p.fps, p.score), textcoords="offset points", xytext=offset, fontsize="small",
                    color=FRONT_COLOR if p.on_front else "black")
    key = "\n".join(f"{n:>2}  {p.label}{'  (front)' if p.on_front else ''}" for n, p in enumerate(points, 1))
    ax.text(1.03, 1.0, key, transform=ax.transAxes, va="top", ha="left", fontsize="x-small", family="monospace")
    front = sorted((p for p in points if p.on_front), key=lambda p: p.fps)
    if len(front) > 1:
        ax.plot([p.fps for p in front], [p.score for p in front], color=FRONT_COLOR, linestyle="--",
                linewidth=1.2, zorder=2, label="front")
        ax.legend(loc="best", fontsize="small")
    if log_x:
        ax.set_xscale("log")
    ax.margins(0.15)
    ax.set(xlabel="FPS", ylabel=score_label, title=title)
    ax.grid(True, linestyle=":")
    return _save(fig, path)


def plot_differences(labels: list[str], differences: list[float], path: str | Path, ylabel: str,
                     title: str = "") -> Path:
    """Sorted bars of ``other - reference`` per item (sequence or attribute): losses red, gains green."""
    width = min(max(FIGURE_SIZE_INCHES[0], 0.25 * len(labels) + 1.5), 3 * FIGURE_SIZE_INCHES[0])
    fig, ax = _new_axes((width, FIGURE_SIZE_INCHES[1]))
    x = np.arange(len(labels))
    ax.bar(x, differences, color=[LOSS_COLOR if d < 0 else GAIN_COLOR for d in differences])
    ax.axhline(0.0, color="black", linewidth=0.8)
    if len(labels) <= MAX_BAR_LABELS:
        ax.set_xticks(x, labels, rotation=90, fontsize="x-small")
    else:
        ax.set_xticks([])
    ax.set(ylabel=ylabel, title=title, xlim=(-0.6, len(labels) - 0.4))
    ax.grid(True, axis="y", linestyle=":")
    return _save(fig, path)
