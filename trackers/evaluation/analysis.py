"""Offline analysis of raw result folders (ours or a published tracker's): score table and plots.

Needs only ground truth and result files, no model or GPU. One ``OPEMetric`` per tracker accumulates
the dataset scores, exactly as ``lightning test`` does online; each sequence is also scored alone
for the per-sequence report. The ground truth comes in as ``SequenceAnnotation``s: `lightning
analyze` reads them with the dataset readers of `lightning test`, so both apply one set of layout
rules; this module is metric arithmetic only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trackers.evaluation.metrics_pytracking import InvalidResultsError
from trackers.evaluation.ope_metrics import build_ope_metric
from trackers.evaluation.plots import plot_reports
from trackers.evaluation.result_files import TIME_SUFFIX, read_raw_results, read_times

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "pytracking": ("AUC", "Precision", "NormPrecision", "OP50", "OP75"),
    "got10k": ("AO", "SR0.5", "SR0.75"),
    "trackingnet": ("Success", "Precision", "NormPrecision", "Coverage"),
}
SCORE_FORMAT = {"pytracking": "{:.2f}", "got10k": "{:.3f}", "trackingnet": "{:.2f}"}


@dataclass(frozen=True)
class SequenceAnnotation:
    """What every protocol needs of one sequence.

    ``visible`` holds the dataset's own flags as the toolkits read them, whatever the box (LaSOT:
    neither fully occluded nor out of view, pytracking's ``target_visible``; GOT-10k: ``cover > 0``).
    ``image_size`` (W, H) is needed only by the got10k protocol's clipping.
    """

    name: str
    boxes: np.ndarray  # (L, 4) float64 frame xywh
    visible: np.ndarray  # (L,) bool
    image_size: tuple[int, int] | None


@dataclass
class TrackerReport:
    """Scores of one tracker; ``overall`` is None when some sequence was rejected (see ``errors``)."""

    name: str
    overall: dict[str, Any] | None
    sequences: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    fps: float | None = None


def _metric_inputs(ann: SequenceAnnotation, convention: str, dataset: str) -> dict[str, Any]:
    """What each protocol reads from the ground truth (pytracking: the flags on LaSOT only, as pytracking
    does; got10k: the flags as its cover label, and the image size)."""
    if convention == "pytracking":
        return {"visible": ann.visible} if dataset == "lasot" else {}
    if convention == "got10k":
        if ann.image_size is None:
            raise FileNotFoundError(f"{ann.name}: no image size for the got10k clipping; add image_sizes.json "
                                    "({seq: {width, height}}) or the images to the dataset root")
        return {"visible": ann.visible, "image_size": ann.image_size}
    return {}


def _as_plain(result: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if v.ndim == 0 else v.numpy()) for k, v in result.items()}


def pooled_fps(results_dir: Path, names: Sequence[str]) -> float | None:
    """#frames / sum of per-frame times over the sequences that have a time file (init frame included)."""
    times = [read_times(p) for n in names if (p := results_dir / f"{n}{TIME_SUFFIX}.txt").exists()]
    if not times:
        return None
    total = float(sum(t.sum() for t in times))
    return sum(len(t) for t in times) / total if total > 0 else None


def evaluate_results(
    annotations: Sequence[SequenceAnnotation],
    results_dir: str | Path,
    convention: str = "pytracking",
    name: str | None = None,
    dataset: str = "lasot",
    **metric_options: Any,
) -> TrackerReport:
    """Score one raw-results folder on the given sequences, overall and per sequence.

    ``dataset`` is pytracking's dataset rule (``lasot``: length check and visibility flags).

    A sequence the protocol rejects (pytracking: NaN or negative sizes, too few lines) voids the
    overall result, as in the official tools, but the other sequences are still reported.
    """
    results_dir = Path(results_dir)
    if convention == "pytracking":
        metric_options.setdefault("dataset", dataset)
    overall = build_ope_metric(convention, return_curves=True, **metric_options)
    report = TrackerReport(name or results_dir.name, None)
    for ann in annotations:
        pred = read_raw_results(results_dir / f"{ann.name}.txt")
        inputs = _metric_inputs(ann, convention, dataset)
        single = build_ope_metric(convention, return_curves=True, **metric_options)
        try:
            single.update(pred, ann.boxes, name=ann.name, **inputs)
        except InvalidResultsError as err:
            report.errors[ann.name] = str(err)
            continue
        report.sequences[ann.name] = _as_plain(single.compute())
        overall.update(pred, ann.boxes, name=ann.name, **inputs)
    if not report.errors:
        report.overall = _as_plain(overall.compute())
    report.fps = pooled_fps(results_dir, [a.name for a in annotations])
    return report


def format_table(rows: Sequence[Mapping[str, Any]], convention: str) -> str:
    """A fixed-width text table: tracker, the protocol's scores, FPS and sequence count."""
    columns = ("Tracker", *TABLE_COLUMNS[convention], "FPS", "Sequences")
    fmt = SCORE_FORMAT[convention]
    cells = [list(columns)]
    for row in rows:
        cells.append([str(row["Tracker"]), *(fmt.format(row[c]) for c in TABLE_COLUMNS[convention]),
                      "-" if row["FPS"] is None else f"{row['FPS']:.1f}", str(row["Sequences"])])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def analyze(
    annotations: Sequence[SequenceAnnotation],
    result_dirs: Mapping[str, str | Path] | Sequence[str | Path],
    dataset: str = "lasot",
    convention: str = "pytracking",
    out_dir: str | Path | None = None,
    print_table: bool = True,
    title: str | None = None,
    **metric_options: Any,
) -> list[dict[str, Any]]:
    """Score raw-result folders against a benchmark's ground truth; print a table, write plots to ``out_dir``.

    ``result_dirs`` maps display names to folders (a list uses the folder names); ``dataset`` is
    pytracking's dataset rule. Returns one row per tracker: ``{"Tracker", <scores of the protocol>,
    "FPS", "Sequences"}``.
    """
    named = dict(result_dirs) if isinstance(result_dirs, Mapping) else {Path(d).name: d for d in result_dirs}
    if not isinstance(result_dirs, Mapping) and len(named) != len(result_dirs):
        raise ValueError("two result folders share a name; pass a dict {name: folder} instead of a list")
    reports = [evaluate_results(annotations, d, convention, n, dataset, **metric_options) for n, d in named.items()]
    for rep in reports:
        if rep.errors:
            seq, msg = next(iter(rep.errors.items()))
            raise InvalidResultsError(f"tracker {rep.name}: {len(rep.errors)} sequence(s) rejected, e.g. {msg}; "
                                      f"fix its results in {named[rep.name]} or exclude {sorted(rep.errors)}")
    rows = [{"Tracker": r.name, **{c: r.overall[c] for c in TABLE_COLUMNS[convention]},
             "FPS": r.fps, "Sequences": len(r.sequences)} for r in reports]
    table = format_table(rows, convention)
    if print_table:
        print(table)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"table_{convention}.txt").write_text(table + "\n")
        plot_reports({r.name: r.overall for r in reports}, convention, out_dir,
                     title=f"{title or dataset} ({convention}, {len(annotations)} sequences)")
    return rows

