"""The chain's results: one line per stage, the end-of-chain table, the comparisons and ``summary.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from lightning_app.pipeline.chain import Chain, Comparison
from lightning_app.pipeline.evaluate import TABLE_SCORES, StageEval

SUMMARY_FILE = "summary.json"


def _figure(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def stage_summary(result: StageEval) -> str:
    """One line per finished stage."""
    scores = "  ".join(f"{k} {result.scores[k]:.2f}" for k in TABLE_SCORES if k in result.scores) or "AUC -"
    speed = result.speed
    timing = "latency -"
    if speed is not None:
        timing = f"{speed.latency_ms_median:.2f} ms ({speed.fps:.1f} FPS), {speed.params_m:.3f} M params"
    return "  ".join([scores, timing, *result.notes])


def format_summary(evaluations: Mapping[str, StageEval], latency_iters: int | None = None) -> str:
    """The end-of-chain table: OPE scores and speed of every stage's model."""
    width = max([14, *(len(name) for name in evaluations)])
    header = (f"{'stage':<{width}} {'AUC':>7} {'Precision':>10} {'NormPrecision':>14} {'latency ms':>11} {'FPS':>8}"
              f" {'params(M)':>10}  note")
    rows = [header, "-" * len(header)]
    for name, result in evaluations.items():
        s, speed = result.scores, result.speed
        rows.append(
            f"{name:<{width}} {_figure(s.get('AUC'), 2):>7} {_figure(s.get('Precision'), 2):>10}"
            f" {_figure(s.get('NormPrecision'), 2):>14}"
            f" {_figure(speed and speed.latency_ms_median, 2):>11} {_figure(speed and speed.fps, 1):>8}"
            f" {_figure(speed and speed.params_m, 3):>10}  {'; '.join(result.notes)}".rstrip()
        )
    devices = sorted({r.speed.device for r in evaluations.values() if r.speed})
    if devices:
        calls = f"{latency_iters} " if latency_iters else ""
        rows.append(f"latency: median of {calls}batch-1 per-frame calls on {', '.join(devices)}")
    return "\n".join(rows)


def format_comparisons(comparisons: Sequence[Comparison], evaluations: Mapping[str, StageEval]) -> list[str]:
    """One line per comparison: both AUCs, the difference in points and the ratio (or why one is missing)."""
    lines = []
    for c in comparisons:
        auc = {name: (evaluations.get(name) or StageEval()).scores.get("AUC") for name in (c.stage, c.baseline)}
        a, b = auc[c.stage], auc[c.baseline]
        if a is None or b is None:
            missing = " and ".join(name for name, value in auc.items() if value is None)
            lines.append(f"{c.label}: no AUC for {missing}")
            continue
        ratio = f"{100.0 * a / b:.1f}%" if b else "-"
        lines.append(f"{c.label}: {c.stage} AUC {a:.2f} vs {c.baseline} {b:.2f}: {a - b:+.2f} points, {ratio}")
    return lines


def write_summary(chain: Chain, evaluations: Mapping[str, StageEval]) -> Path:
    """``<root>/summary.json``: every stage's scores and speed, and the comparison lines."""
    stages = {
        name: {"scores": r.scores, "notes": r.notes,
               "speed": None if r.speed is None else {"latency_ms_median": r.speed.latency_ms_median,
                                                      "fps": r.speed.fps, "params_m": r.speed.params_m,
                                                      "device": r.speed.device}}
        for name, r in evaluations.items()
    }
    path = chain.root / SUMMARY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = {"chain": chain.name, "stages": stages,
               "comparisons": format_comparisons(chain.comparisons, evaluations)}
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path
