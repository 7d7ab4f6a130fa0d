"""The ablation report of a sweep, from what its runs' `lightning test` wrote.

Per run, every ``metrics.json`` under its folder (one for fit + test, one per evaluated stage for a
chain) gives the scores (``headline_scores``: pytracking's AUC / Precision / NormPrecision) and the
``<seq>_time.txt`` files beside it the tracking speed (frames / seconds of the online tracker).
Written to ``<root>/report/``: ``runs.csv`` (one row per run and stage), ``ablation.csv`` and
``ablation.md`` (mean +- std over seeds per setting), ``bar_<axis>.png`` (AUC per value of each
axis, averaged over the other axes and seeds) and ``auc_vs_fps.png``; with ``wandb: true`` also both
tables in a ``report`` run of the sweep's W&B group.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_app.pipeline.evaluate import TABLE_SCORES, headline_scores
from lightning_app.sweep.spec import Run, Sweep, format_value
from trackers.errors import SetupError
from trackers.evaluation.result_files import TIME_SUFFIX, read_times
from trackers.evaluation.result_files import METRICS_FILE

REPORT_DIR = "report"
SPEED = "FPS"
FIGURES = (*TABLE_SCORES, SPEED)


@dataclass
class RunResult:
    run: Run
    stage: str  # "" for fit + test; the metrics file's folder below the run for a chain
    scores: dict[str, float] = field(default_factory=dict)


def tracking_fps(raw_dir: Path) -> float | None:
    """Frames per second of the online tracker over every sequence timed in ``raw_dir`` (None if untimed)."""
    frames, seconds = 0, 0.0
    for path in raw_dir.glob(f"*{TIME_SUFFIX}.txt"):
        times = read_times(path)
        times = times[times == times]  # drop NaN (resumed sequences keep no times)
        frames, seconds = frames + len(times), seconds + float(times.sum())
    return frames / seconds if seconds > 0 else None


def gather(sweep: Sweep) -> list[RunResult]:
    """Every finished run's scores and speed, in the sweep's run order."""
    results = []
    for run in sweep.runs:
        for metrics in sorted(run.dir.rglob(METRICS_FILE)):
            record = json.loads(metrics.read_text())
            try:
                scores = headline_scores(record)
            except SetupError:
                continue  # a benchmark scored by its server: nothing to tabulate
            fps = tracking_fps(metrics.parent)
            if fps is not None:
                scores[SPEED] = fps
            rel = metrics.parent.relative_to(run.dir).parts
            stage = "" if not sweep.pipeline else rel[1] if len(rel) > 1 else rel[0]
            results.append(RunResult(run, stage, scores))
    return results


def _value_columns(sweep: Sweep, run: Run) -> dict[str, Any]:
    return {axis: run.values.get(axis, "") for axis in sweep.axes}


def run_rows(sweep: Sweep, results: list[RunResult]) -> list[dict[str, Any]]:
    return [{"run": r.run.name, "setting": r.run.setting, **_value_columns(sweep, r.run), "seed": r.run.seed,
             "stage": r.stage, **{k: r.scores.get(k) for k in FIGURES}} for r in results]


def ablation_rows(sweep: Sweep, results: list[RunResult]) -> list[dict[str, Any]]:
    """Mean and std (sample std; 0 for one seed) of each figure over the seeds of a setting (and stage)."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.run.setting, r.stage), []).append(r)
    rows = []
    for (setting, stage), members in groups.items():
        row: dict[str, Any] = {"setting": setting, **_value_columns(sweep, members[0].run), "stage": stage,
                               "seeds": len(members)}
        for key in FIGURES:
            values = [m.scores[key] for m in members if key in m.scores]
            row[f"{key}_mean"] = statistics.fmean(values) if values else None
            row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
        rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("")
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(sweep: Sweep, rows: list[dict[str, Any]]) -> str:
    labels = [a.split(".")[-1] for a in sweep.axes]
    head = ["setting", *labels, "stage", "seeds", *FIGURES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        figures = []
        for key in FIGURES:
            mean, std = row[f"{key}_mean"], row[f"{key}_std"]
            figures.append("-" if mean is None else f"{mean:.2f} +- {std:.2f}")
        values = [format_value(row[a]) for a in sweep.axes]
        lines.append("| " + " | ".join([row["setting"], *values, row["stage"] or "-", str(row["seeds"]), *figures]) + " |")
    return "\n".join(lines) + "\n"


def _plots(sweep: Sweep, results: list[RunResult], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for axis in sweep.axes:
        by_value: dict[str, list[float]] = {}
        for r in results:
            if "AUC" in r.scores and axis in r.run.values:
                by_value.setdefault(format_value(r.run.values[axis]), []).append(r.scores["AUC"])
        if not by_value:
            continue
        fig, ax = plt.subplots(figsize=(4 + len(by_value) * 0.5, 3))
        names = list(by_value)
        means = [statistics.fmean(v) for v in by_value.values()]
        stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in by_value.values()]
        ax.bar(names, means, yerr=stds, capsize=4)
        ax.set_xlabel(axis.split(".")[-1])
        ax.set_ylabel("AUC")
        ax.set_title(f"{sweep.name}: AUC per {axis.split('.')[-1]}")
        fig.tight_layout()
        path = out / f"bar_{axis.split('.')[-1]}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    points = [(r.scores[SPEED], r.scores["AUC"], r.run.setting) for r in results if SPEED in r.scores and "AUC" in r.scores]
    if points:
        fig, ax = plt.subplots(figsize=(6, 4))
        for setting in dict.fromkeys(p[2] for p in points):
            xs, ys = zip(*[(x, y) for x, y, s in points if s == setting])
            ax.scatter(xs, ys, label=setting)
        ax.set_xlabel("tracking FPS")
        ax.set_ylabel("AUC")
        ax.set_title(f"{sweep.name}: AUC vs speed")
        ax.legend(fontsize=6)
        fig.tight_layout()
        path = out / "auc_vs_fps.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _wandb_tables(sweep: Sweep, runs: list[dict[str, Any]], ablation: list[dict[str, Any]], out: Path,
                  images: list[Path]) -> str:
    import wandb

    from lightning_app.loggers import wandb_credentials_available

    mode = "online" if wandb_credentials_available() else "offline"
    run = wandb.init(project="distiltrack", group=sweep.name, job_type="report", name=f"{sweep.name}/report",
                     dir=str(out), mode=mode, config={"sweep": sweep.name, "axes": list(sweep.axes)})
    for key, rows in (("runs", runs), ("ablation", ablation)):
        if rows:
            columns = list(rows[0])
            run.log({key: wandb.Table(columns=columns, data=[[_cell(r[c]) for c in columns] for r in rows])})
    run.log({p.stem: wandb.Image(str(p)) for p in images})
    directory = run.dir
    run.finish()
    return f"wandb sync {Path(directory).parent}" if mode == "offline" else f"W&B group {sweep.name}"


def _cell(value: Any) -> Any:
    return value if value is None or isinstance(value, (int, float, str)) else json.dumps(value)


def write_report(sweep: Sweep) -> tuple[Path, list[dict[str, Any]], list[dict[str, Any]], str | None]:
    """Write the tables and plots; returns (folder, run rows, ablation rows, W&B note or None)."""
    out = sweep.root / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    results = gather(sweep)
    runs, ablation = run_rows(sweep, results), ablation_rows(sweep, results)
    _write_csv(out / "runs.csv", runs)
    _write_csv(out / "ablation.csv", ablation)
    (out / "ablation.md").write_text(markdown_table(sweep, ablation))
    images = _plots(sweep, results, out)
    note = _wandb_tables(sweep, runs, ablation, out, images) if sweep.wandb and results else None
    return out, runs, ablation, note
