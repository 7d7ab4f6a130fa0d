"""Evaluation of a finished stage: OPE scores from a `lightning test` subprocess, speed measured here.

A failed evaluation becomes a note in the table; it never stops the chain.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trackers.errors import SetupError
from trackers.evaluation.speed import SpeedReport
from trackers.evaluation.result_files import METRICS_FILE

if TYPE_CHECKING:
    from lightning_app.pipeline.runner import Runner, StageJob

TABLE_SCORES = ("AUC", "Precision", "NormPrecision")


@dataclass
class StageEval:
    """What the summary shows of one stage's model; ``notes`` say why a figure is missing."""

    scores: dict[str, float] = field(default_factory=dict)
    speed: SpeedReport | None = None
    notes: list[str] = field(default_factory=list)


class NoTracker(Exception):
    """The stage's module has no network: nothing to time."""


def evaluate_stage(job: StageJob, runner: Runner, measure: Callable[[StageJob], SpeedReport]) -> StageEval:
    """Speed, then OPE scores; any failure becomes a note, so the chain and its table go on."""
    result = StageEval()
    try:
        result.speed = measure(job)
    except NoTracker:
        result.notes.append("no tracker")
        return result
    except Exception as err:  # noqa: BLE001 - reported in the table, the stage's training still stands
        result.notes.append(f"latency failed: {_one_line(err)}")
    try:
        result.scores = run_test(job, runner)
    except Exception as err:  # noqa: BLE001 - as above
        result.notes.append(f"test failed: {_one_line(err)}")
    return result


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def run_test(job: StageJob, runner: Runner) -> dict[str, float]:
    """``lightning test`` in its own process; the scores come from the ``metrics.json`` it writes."""
    for stale in job.results_dir.glob(f"*/*/{METRICS_FILE}"):
        stale.unlink()
    code = runner(job.test_command())
    if code != 0:
        raise SetupError(f"lightning test exited with status {code} (its output is above)")
    written = sorted(job.results_dir.glob(f"*/*/{METRICS_FILE}"), key=lambda p: p.stat().st_mtime)
    if not written:
        raise SetupError(f"lightning test wrote no {METRICS_FILE} under {job.results_dir}")
    return headline_scores(json.loads(written[-1].read_text()))


def headline_scores(record: Mapping[str, Any]) -> dict[str, float]:
    """AUC / Precision / NormPrecision of a test's metrics record, pytracking's convention first."""
    metrics = record.get("metrics") or {}
    for scores in [metrics.get("pytracking") or {}, *metrics.values()]:
        found = {k: float(scores[k]) for k in TABLE_SCORES if k in scores}
        if found:
            return found
    raise SetupError(f"no local scores for benchmark {record.get('benchmark')!r} (scored by its server)")


def measure_speed(job: StageJob, warmup: int, iters: int) -> SpeedReport:
    """Params and batch-1 latency of the stage's trained network, as `lightning benchmark model` measures them.

    The model is built by the parser `fit` used, from the stage's configs, inputs and extra arguments.
    """
    import torch

    from lightning_app.commands.benchmark import per_frame_call
    from lightning_app.config_loading import build_model_from_configs
    from trackers.evaluation.speed import resolve_device, speed_report
    from trackers.safe_unpickling import load_checkpoint_data

    module = build_model_from_configs(list(job.configs), job.override_args())
    if getattr(module, "network", None) is None:  # e.g. a baseline: it tracks, but has no network to time
        raise NoTracker(job.name)
    checkpoint = load_checkpoint_data(job.checkpoint)  # tensors-only, as `--ckpt_path` restores it
    module.on_load_checkpoint(checkpoint)  # as `--ckpt_path` restores: e.g. a depth-pruned student first drops blocks
    module.load_state_dict(checkpoint["state_dict"])
    device = resolve_device("cuda" if torch.cuda.is_available() else "cpu")
    network, call = per_frame_call(module, device)
    report = speed_report(job.name, network, call, device, warmup, iters)
    del module, network, call
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the next stage's training gets the memory back
    return report
