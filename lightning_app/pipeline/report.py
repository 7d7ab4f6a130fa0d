"""The chain's results: one line per run, the end-of-chain table, the comparisons and ``summary.json``.

With seeds, every stage and comparison is also reported as mean +- spread over the seeds (the sample
standard deviation, and each seed's value), and each stage's AUC as a multiple of every baseline's.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lightning_app.pipeline.chain import Chain, Comparison
from lightning_app.pipeline.evaluate import TABLE_SCORES, StageEval

SUMMARY_FILE = "summary.json"


def _figure(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@dataclass(frozen=True)
class Spread:
    """Values over seeds: mean, sample standard deviation (0 for one value), the values in seed order."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def text(self, digits: int = 2, unit: str = "") -> str:
        if len(self.values) == 1:
            return f"{self.values[0]:.{digits}f}{unit}"
        each = ", ".join(f"{v:.{digits}f}" for v in self.values)
        return f"{self.mean:.{digits}f} +- {self.std:.{digits}f}{unit} ({each})"

    def record(self) -> dict:
        return {"mean": self.mean, "std": self.std, "values": list(self.values)}


def stage_summary(result: StageEval) -> str:
    """One line per finished run."""
    scores = "  ".join(f"{k} {result.scores[k]:.2f}" for k in TABLE_SCORES if k in result.scores) or "AUC -"
    speed = result.speed
    timing = "latency -"
    if speed is not None:
        timing = f"{speed.latency_ms_median:.2f} ms ({speed.fps:.1f} FPS), {speed.params_m:.3f} M params"
    return "  ".join([scores, timing, *result.notes])


def format_summary(evaluations: Mapping[str, StageEval], latency_iters: int | None = None) -> str:
    """The end-of-chain table: OPE scores and speed of every run's model."""
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


def _auc(evaluations: Mapping[str, StageEval], key: str) -> float | None:
    return (evaluations.get(key) or StageEval()).scores.get("AUC")


def stage_aucs(chain: Chain, evaluations: Mapping[str, StageEval]) -> dict[str, Spread]:
    """Each stage's AUC over its seeds (stages with a missing AUC are left out)."""
    out = {}
    for stage in chain.stages:
        values = [_auc(evaluations, chain.instance(stage.name, seed)) for seed in chain.stage_seeds(stage.name)]
        if values and None not in values:
            out[stage.name] = Spread(tuple(values))  # type: ignore[arg-type]
    return out


@dataclass(frozen=True)
class ComparisonResult:
    comparison: Comparison
    stage: Spread | None = None
    baseline: Spread | None = None
    difference: Spread | None = None  # points, seed by seed
    ratio: Spread | None = None  # percent, seed by seed
    missing: tuple[str, ...] = ()

    def line(self) -> str:
        c = self.comparison
        if self.missing:
            return f"{c.label}: no AUC for {' and '.join(self.missing)}"
        ratio = "-" if self.ratio is None else self.ratio.text(1, "%")
        return (f"{c.label}: {c.stage} AUC {self.stage.text()} vs {c.baseline} {self.baseline.text()}: "
                f"{self.difference.text()} points, {ratio}")

    def record(self) -> dict:
        c = self.comparison
        out: dict = {"label": c.label, "stage": c.stage, "baseline": c.baseline, "line": self.line()}
        for name in ("stage", "baseline", "difference", "ratio"):
            value = getattr(self, name)
            out[name if name in ("difference", "ratio") else f"{name}_auc"] = None if value is None else value.record()
        return out


def compare(chain: Chain, comparison: Comparison, evaluations: Mapping[str, StageEval]) -> ComparisonResult:
    """``stage`` vs ``baseline`` paired seed by seed (a shared stage pairs with every seed)."""
    seeds = chain.seeds or (None,)
    pairs = [(_auc(evaluations, chain.instance(comparison.stage, k)),
              _auc(evaluations, chain.instance(comparison.baseline, k))) for k in seeds]
    missing = tuple(name for name, i in ((comparison.stage, 0), (comparison.baseline, 1))
                    if any(p[i] is None for p in pairs))
    if missing:
        return ComparisonResult(comparison, missing=missing)
    a, b = (tuple(p[i] for p in pairs) for i in (0, 1))
    ratio = None if 0.0 in b else Spread(tuple(100.0 * x / y for x, y in zip(a, b)))
    return ComparisonResult(comparison, Spread(a), Spread(b), Spread(tuple(x - y for x, y in zip(a, b))), ratio)


def format_comparisons(chain: Chain, evaluations: Mapping[str, StageEval]) -> list[str]:
    """One line per comparison: both AUCs, the difference in points and the ratio (or why one is missing)."""
    return [compare(chain, c, evaluations).line() for c in chain.comparisons]


def baseline_multiples(chain: Chain, evaluations: Mapping[str, StageEval]) -> dict[str, dict[str, Spread]]:
    """baseline -> stage -> the stage's AUC over the baseline's, seed by seed."""
    aucs = stage_aucs(chain, evaluations)
    out: dict[str, dict[str, Spread]] = {}
    for name in chain.baselines:
        base = _auc(evaluations, name)
        if base:
            out[name] = {stage: Spread(tuple(v / base for v in spread.values)) for stage, spread in aucs.items()}
    return out


def format_spreads(chain: Chain, evaluations: Mapping[str, StageEval]) -> list[str]:
    """With seeds: each stage's AUC as mean +- spread, and its multiple of each baseline."""
    if not chain.seeds and not chain.baselines:
        return []
    multiples = baseline_multiples(chain, evaluations)
    lines = []
    for stage, spread in stage_aucs(chain, evaluations).items():
        extra = "".join(f"; {m[stage].text(2, 'x')} {name}" for name, m in multiples.items())
        lines.append(f"{stage}: AUC {spread.text()}{extra}")
    return lines


def write_summary(chain: Chain, evaluations: Mapping[str, StageEval]) -> Path:
    """``<root>/summary.json``: every run's scores and speed, stages over seeds, the comparisons."""
    runs = {
        name: {"scores": r.scores, "notes": r.notes,
               "speed": None if r.speed is None else {"latency_ms_median": r.speed.latency_ms_median,
                                                      "fps": r.speed.fps, "params_m": r.speed.params_m,
                                                      "device": r.speed.device}}
        for name, r in evaluations.items()
    }
    multiples = baseline_multiples(chain, evaluations)
    path = chain.root / SUMMARY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "chain": chain.name,
        "seeds": list(chain.seeds),
        "stages": runs,
        "auc_over_seeds": {name: s.record() for name, s in stage_aucs(chain, evaluations).items()},
        "baseline_multiples": {b: {s: v.record() for s, v in m.items()} for b, m in multiples.items()},
        "comparisons": [compare(chain, c, evaluations).record() for c in chain.comparisons],
    }
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path
