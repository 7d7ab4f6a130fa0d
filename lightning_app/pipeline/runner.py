"""Running a chain: each stage an ordinary `lightning fit` in its own process, reused when already made.

A stage logs under ``<root>/<stage>``; when it ends it writes ``<root>/<stage>/final.ckpt`` (the
``StageCheckpoint`` callback) and a ``stage.json`` record of its command. A finished stage is reused
on the next call when the record's command is the same; ``use`` replaces a stage by any checkpoint.
With seeds, each run of a stage is ``<root>/<stage>/seed<k>`` (``Chain.instance``); baselines are
tested once the chain is complete, under ``<root>/baselines/<name>``.
"""

from __future__ import annotations

import functools
import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from callbacks.stage_checkpoint import StageCheckpoint
from lightning_app.commands.benchmark import LATENCY_ITERS, LATENCY_WARMUP
from lightning_app.pipeline.chain import Chain, Stage
from lightning_app.pipeline.evaluate import StageEval, evaluate_stage, measure_speed, run_test
from lightning_app.pipeline.report import stage_summary
from trackers.errors import MissingFileError, SetupError
from trackers.evaluation.speed import SpeedReport

FINAL_CHECKPOINT = "final.ckpt"
STAGE_RECORD = "stage.json"
RESULTS_DIR = "results"
BASELINES_DIR = "baselines"

Runner = Callable[[list[str]], int]


@dataclass(frozen=True)
class StageJob:
    """One stage as run and evaluated: its composed configs, its inputs (checkpoints) and its folder."""

    name: str
    configs: tuple[str, ...]
    inputs: dict[str, str]  # config key -> checkpoint path
    stage_dir: Path
    extra_args: tuple[str, ...] = ()
    trained: bool = True  # False: a checkpoint-free baseline, tested as configured

    @property
    def checkpoint(self) -> Path:
        return self.stage_dir / FINAL_CHECKPOINT

    @property
    def results_dir(self) -> Path:
        return self.stage_dir / RESULTS_DIR

    def override_args(self) -> list[str]:
        """The command-line arguments after the configs that `fit` and `test` of this stage share."""
        return [f"--{key}={path}" for key, path in self.inputs.items()] + list(self.extra_args)

    def _command(self, subcommand: str) -> list[str]:
        cmd = [sys.executable, "-m", "lightning_app.cli", subcommand]
        for cfg in self.configs:
            cmd += ["--config", cfg]
        cmd += [f"--trainer.default_root_dir={self.stage_dir}"]
        return cmd + [f"--{key}={path}" for key, path in self.inputs.items()]

    def fit_command(self) -> list[str]:
        """The ``lightning fit`` command line of the stage (also what ``--dry-run`` prints)."""
        cmd = self._command("fit")
        cmd += [f"--trainer.callbacks+={StageCheckpoint.__module__}.{StageCheckpoint.__name__}"]
        cmd += [f"--trainer.callbacks.path={self.checkpoint}"]
        return cmd + list(self.extra_args)

    def test_command(self) -> list[str]:
        """``lightning test`` of the stage's final checkpoint, results under the stage folder."""
        cmd = self._command("test") + [f"--model.init_args.results_dir={self.results_dir}"]
        return cmd + list(self.extra_args) + ([f"--ckpt_path={self.checkpoint}"] if self.trained else [])


@dataclass
class ChainRun:
    checkpoints: dict[str, str] = field(default_factory=dict)
    evaluations: dict[str, StageEval] = field(default_factory=dict)


def _record(command: Sequence[str], checkpoint: Path) -> dict:
    return {"checkpoint": str(checkpoint), "command": list(command[1:])}  # the interpreter path may differ


def run_chain(
    chain: Chain,
    extra_configs: Sequence[str] = (),
    stage_configs: dict[str, list[str]] | None = None,
    use: dict[str, str] | None = None,
    rerun: Sequence[str] = (),
    until: str | None = None,
    extra_args: Sequence[str] = (),
    dry_run: bool = False,
    evaluate: bool = True,
    runner: Runner = lambda cmd: subprocess.call(cmd),
    measure: Callable[[StageJob], SpeedReport] | None = None,
) -> ChainRun:
    """Run (or reuse) the stages in order, evaluating each; ``measure`` times a stage's model (default: here)."""
    stage_configs, use = stage_configs or {}, use or {}
    measure = measure or functools.partial(measure_speed, warmup=LATENCY_WARMUP, iters=LATENCY_ITERS)
    for name in [*stage_configs, *use, *rerun, *([until] if until else [])]:
        chain.stage(name)  # unknown names are refused before anything runs
    run = ChainRun()
    for stage in chain.stages:
        for seed in chain.stage_seeds(stage.name):
            _run_instance(chain, stage, seed, run, stage_configs.get(stage.name, []), extra_configs, use, rerun,
                          extra_args, dry_run, evaluate, runner, measure)
        if stage.name == until:
            break
    else:
        if evaluate:
            for name, fragment in chain.baselines.items():
                _test_baseline(chain, name, fragment, run, extra_configs, extra_args, dry_run, runner)
    return run


def _run_instance(
    chain: Chain, stage: Stage, seed: int | None, run: ChainRun, stage_configs: Sequence[str],
    extra_configs: Sequence[str], use: dict[str, str], rerun: Sequence[str], extra_args: Sequence[str],
    dry_run: bool, evaluate: bool, runner: Runner, measure: Callable[[StageJob], SpeedReport],
) -> None:
    """One run of ``stage`` (for ``seed``): reused, replaced (``use``) or trained, then evaluated."""
    key = chain.instance(stage.name, seed)
    if stage.name in use:
        run.checkpoints[key] = _existing(use[stage.name], f"--use {stage.name}=...")
        print(f"[pipeline] {key}: using {run.checkpoints[key]}")
        if evaluate and not dry_run:
            run.evaluations[key] = StageEval(notes=["given checkpoint, not evaluated"])
        return
    job = StageJob(
        key,
        tuple(stage.config_files([*stage_configs, *extra_configs])),
        {k: run.checkpoints[chain.instance(src, seed)] for k, src in stage.inputs.items()},
        chain.root / key,
        (*([] if seed is None or key == stage.name else [f"--seed_everything={seed}"]), *extra_args),
    )
    record_path = job.stage_dir / STAGE_RECORD
    if not dry_run and stage.name not in rerun and record_path.is_file():
        expected = _record(job.fit_command(), job.checkpoint)
        run.checkpoints[key] = _reuse(key, record_path, expected)
        print(f"[pipeline] {key}: done before, reusing {run.checkpoints[key]}")
    else:
        print(f"[pipeline] {key}: {shlex.join(job.fit_command())}", flush=True)
        if not dry_run:
            _run_stage(job, record_path, runner)
        run.checkpoints[key] = str(job.checkpoint)
    if evaluate and dry_run:
        print(f"[pipeline] {key} (evaluation): {shlex.join(job.test_command())}")
    elif evaluate:
        run.evaluations[key] = evaluate_stage(job, runner, measure)
        print(f"[pipeline] {key}: {stage_summary(run.evaluations[key])}", flush=True)


def _test_baseline(
    chain: Chain, name: str, fragment: str, run: ChainRun, extra_configs: Sequence[str],
    extra_args: Sequence[str], dry_run: bool, runner: Runner,
) -> None:
    """A checkpoint-free baseline on the first stage's benchmark and crops (its configs, then ``fragment``)."""
    first = chain.stages[0]
    job = StageJob(name, (*first.config_files(extra_configs), fragment), {}, chain.root / BASELINES_DIR / name,
                   tuple(extra_args), trained=False)
    if dry_run:
        print(f"[pipeline] baseline {name}: {shlex.join(job.test_command())}")
        return
    result = StageEval(notes=["baseline"])
    try:
        result.scores = run_test(job, runner)
    except Exception as err:  # noqa: BLE001 - reported in the table, as a stage's failed test
        result.notes.append(f"test failed: {err}")
    run.evaluations[name] = result
    print(f"[pipeline] baseline {name}: {stage_summary(result)}", flush=True)


def _run_stage(job: StageJob, record_path: Path, runner: Runner) -> None:
    cmd = job.fit_command()
    for stale in (job.checkpoint, record_path):
        stale.unlink(missing_ok=True)
    shutil.rmtree(job.results_dir, ignore_errors=True)  # results of the previous checkpoint would be resumed
    code = runner(cmd)
    if code != 0:
        raise SetupError(f"pipeline stage {job.name!r} failed (exit status {code}); fix it and run the pipeline again")
    if not job.checkpoint.is_file():
        raise SetupError(f"pipeline stage {job.name!r} ended without writing {job.checkpoint}")
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(_record(cmd, job.checkpoint), indent=2))


def _reuse(name: str, record_path: Path, expected: dict) -> str:
    record = json.loads(record_path.read_text())
    if record.get("command") != expected["command"]:
        raise SetupError(
            f"stage {name!r} in {record_path.parent} was made with other configs or inputs; pass --rerun {name} "
            f"or another --root"
        )
    return _existing(record["checkpoint"], str(record_path))


def _existing(path: str, source: str) -> str:
    if not Path(path).is_file():
        raise MissingFileError(f"{source}: checkpoint {path} does not exist")
    return path
