"""`lightning pipeline CHAIN`: run a multi-stage training chain in order, each stage fed by the previous one.

    lightning pipeline mixformerv2_b
    lightning pipeline mixformerv2_s --config configs/presets/cpu_smoke.yaml --root outputs/smoke
    lightning pipeline mixformerv2_b --use mixvit_b=mixformer_vit_base_online.pth.tar   (official teacher)
    lightning pipeline mixformerv2_b --dry-run -- --trainer.devices 4

A chain is a YAML under ``configs/pipelines/`` (or any path): a ``root`` folder and a list of
stages, each with its experiment ``config`` and ``inputs`` mapping config keys to earlier stages,
e.g. ``{model.init_args.teacher_checkpoint: b_stage1}``. A stage may name ``presets``: fragments
that follow a given ``--config`` file (matched by resolved path) for that stage only, e.g. what
``cpu_smoke.yaml`` cannot shrink generically (a teacher's width, the number of bins).

Each stage is an ordinary ``lightning fit`` in its own process (so DDP launches per stage),
logging under ``<root>/<stage>``; when it ends it writes ``<root>/<stage>/final.ckpt`` and a
``stage.json`` record. Then the stage's model is evaluated: ``lightning test --ckpt_path
<root>/<stage>/final.ckpt`` (results under ``<root>/<stage>/results``; finished sequences are not
tracked again) and the per-frame network call is timed in this process; a table of every stage's
AUC, precision and speed ends the run (``--no-eval`` skips this). A failed evaluation is reported
in the table, never stops the chain.

A chain may also list ``comparisons`` (``{label, stage, baseline}``): after the table each prints
the stage's AUC against the baseline's (difference and ratio), e.g. an ablation's two arms; the
table and the comparisons are also written to ``<root>/summary.json``.

Finished stages are reused on the next call when they were made with the same configs;
``--use STAGE=PATH`` replaces a stage by any checkpoint (a Lightning ``.ckpt`` or an official
``.pth.tar``; such a stage is not evaluated) and ``--rerun STAGE`` runs it again.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import yaml

from trackers.errors import MissingFileError, SetupError
from trackers.evaluation.speed import SpeedReport
from trackers.methods.base import METRICS_FILE
from trackers.safe_unpickling import check_checkpoint_file, load_checkpoint_data

PIPELINES_DIR = Path("configs/pipelines")
FINAL_CHECKPOINT = "final.ckpt"
STAGE_RECORD = "stage.json"
SUMMARY_FILE = "summary.json"
RESULTS_DIR = "results"
TABLE_SCORES = ("AUC", "Precision", "NormPrecision")
# Latency of the per-frame call (benchmark model's protocol, fewer calls: it runs after every stage).
LATENCY_WARMUP, LATENCY_ITERS = 10, 50

Runner = Callable[[list[str]], int]


class StageCheckpoint(L.Callback):
    """Saves the network where the pipeline expects it when ``fit`` ends (on every rank; rank 0 writes)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path)


@dataclass(frozen=True)
class Stage:
    name: str
    config: str
    inputs: dict[str, str] = field(default_factory=dict)  # config key -> earlier stage name
    configs: tuple[str, ...] = ()  # extra fragments of this stage
    presets: dict[str, tuple[str, ...]] = field(default_factory=dict)  # preset path -> fragments following it

    def config_files(self, extra_configs: Sequence[str] = ()) -> list[str]:
        """The experiment, then each fragment directly followed by this stage's companions of it."""
        companions = {_resolved(preset): fragments for preset, fragments in self.presets.items()}
        files = [self.config]
        for cfg in (*self.configs, *extra_configs):
            files += [cfg, *companions.get(_resolved(cfg), ())]
        return files


def _resolved(path: str) -> Path:
    return Path(path).expanduser().resolve()


@dataclass(frozen=True)
class Comparison:
    """``stage``'s AUC against ``baseline``'s, printed under ``label`` (an ablation's arms, a pruned model vs its teacher)."""

    label: str
    stage: str
    baseline: str


@dataclass(frozen=True)
class Chain:
    name: str
    root: Path
    stages: tuple[Stage, ...]
    comparisons: tuple[Comparison, ...] = ()

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise SetupError(f"pipeline {self.name} has no stage {name!r}; stages: {', '.join(s.name for s in self.stages)}")


def load_chain(name_or_path: str) -> Chain:
    """A chain by name (``configs/pipelines/<name>.yaml``) or by path; checks that inputs refer to earlier stages."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PIPELINES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PIPELINES_DIR.glob("*.yaml")) if PIPELINES_DIR.is_dir() else []
        raise MissingFileError(f"pipeline {name_or_path!r}: {path} not found; known chains: {', '.join(known) or 'none'}")
    data = yaml.safe_load(path.read_text()) or {}
    stages = tuple(_stage(s, path) for s in data.get("stages", []))
    if not stages:
        raise SetupError(f"{path}: no stages listed under 'stages'")
    seen: set[str] = set()
    for stage in stages:
        unknown = [src for src in stage.inputs.values() if src not in seen]
        if unknown:
            raise SetupError(f"{path}: stage {stage.name!r} takes input from {unknown[0]!r}, which is not an earlier stage")
        seen.add(stage.name)
    comparisons = tuple(_comparison(c, path, seen) for c in data.get("comparisons") or [])
    return Chain(path.stem, Path(data.get("root", f"outputs/{path.stem}")), stages, comparisons)


def _comparison(entry: Any, path: Path, stages: set[str]) -> Comparison:
    if not isinstance(entry, dict) or set(entry) != {"label", "stage", "baseline"}:
        raise SetupError(f"{path}: each comparison is {{label, stage, baseline}}, got {entry!r}")
    for key in ("stage", "baseline"):
        if entry[key] not in stages:
            raise SetupError(f"{path}: comparison {entry['label']!r} names {entry[key]!r}, which is not a stage")
    return Comparison(str(entry["label"]), entry["stage"], entry["baseline"])


def _stage(entry: dict[str, Any], path: Path) -> Stage:
    presets = entry.get("presets") or {}
    if not isinstance(presets, dict) or not all(isinstance(v, list) for v in presets.values()):
        raise SetupError(f"{path}: stage {entry.get('name')!r}: 'presets' maps a preset path to a list of fragments")
    return Stage(
        entry["name"],
        entry["config"],
        dict(entry.get("inputs") or {}),
        tuple(entry.get("configs") or ()),
        {preset: tuple(fragments) for preset, fragments in presets.items()},
    )


@dataclass(frozen=True)
class StageJob:
    """One stage as run and evaluated: its composed configs, its inputs (checkpoints) and its folder."""

    name: str
    configs: tuple[str, ...]
    inputs: dict[str, str]  # config key -> checkpoint path
    stage_dir: Path
    extra_args: tuple[str, ...] = ()

    @property
    def checkpoint(self) -> Path:
        return self.stage_dir / FINAL_CHECKPOINT

    @property
    def results_dir(self) -> Path:
        return self.stage_dir / RESULTS_DIR

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
        return cmd + list(self.extra_args) + [f"--ckpt_path={self.checkpoint}"]


@dataclass
class StageEval:
    """What the summary shows of one stage's model; ``notes`` say why a figure is missing."""

    scores: dict[str, float] = field(default_factory=dict)
    speed: SpeedReport | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class ChainRun:
    checkpoints: dict[str, str] = field(default_factory=dict)
    evaluations: dict[str, StageEval] = field(default_factory=dict)


class NoTracker(Exception):
    """The stage's module has no online tracker: nothing to test or time."""


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
    stage_configs, use, measure = stage_configs or {}, use or {}, measure or measure_speed
    for name in [*stage_configs, *use, *rerun, *([until] if until else [])]:
        chain.stage(name)
    run = ChainRun()
    for stage in chain.stages:
        if stage.name in use:
            run.checkpoints[stage.name] = _existing(use[stage.name], f"--use {stage.name}=...")
            print(f"[pipeline] {stage.name}: using {run.checkpoints[stage.name]}")
            if evaluate and not dry_run:
                run.evaluations[stage.name] = StageEval(notes=["given checkpoint, not evaluated"])
        else:
            job = StageJob(
                stage.name,
                tuple(stage.config_files([*stage_configs.get(stage.name, []), *extra_configs])),
                {key: run.checkpoints[src] for key, src in stage.inputs.items()},
                chain.root / stage.name,
                tuple(extra_args),
            )
            record_path = job.stage_dir / STAGE_RECORD
            if not dry_run and stage.name not in rerun and record_path.is_file():
                expected = _record(job.fit_command(), job.checkpoint)
                run.checkpoints[stage.name] = _reuse(stage.name, record_path, expected)
                print(f"[pipeline] {stage.name}: done before, reusing {run.checkpoints[stage.name]}")
            else:
                print(f"[pipeline] {stage.name}: {shlex.join(job.fit_command())}", flush=True)
                if not dry_run:
                    _run_stage(job, record_path, runner)
                run.checkpoints[stage.name] = str(job.checkpoint)
            if evaluate and dry_run:
                print(f"[pipeline] {stage.name} (evaluation): {shlex.join(job.test_command())}")
            elif evaluate:
                run.evaluations[stage.name] = evaluate_stage(job, runner, measure)
                print(f"[pipeline] {stage.name}: {stage_summary(run.evaluations[stage.name])}", flush=True)
        if stage.name == until:
            break
    return run


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


# ---------------------------------------------------------------------------------------------
# Evaluation of a finished stage
# ---------------------------------------------------------------------------------------------


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


def measure_speed(job: StageJob) -> SpeedReport:
    """Params and batch-1 latency of the stage's trained network, as `lightning benchmark model` measures them."""
    import torch

    from lightning_app.commands.benchmark import per_frame_call
    from lightning_app.config_loading import build_model_from_configs
    from trackers.evaluation.speed import resolve_device, speed_report
    from trackers.methods.base import TrackingModule

    module = build_model_from_configs(list(job.configs), model_overrides(job.inputs, job.extra_args))
    if type(module).build_tracker is TrackingModule.build_tracker:
        raise NoTracker(job.name)
    checkpoint = load_checkpoint_data(job.checkpoint)  # tensors-only, as `--ckpt_path` restores it
    module.on_load_checkpoint(checkpoint)  # as `--ckpt_path` restores: e.g. a depth-pruned student first drops blocks
    module.load_state_dict(checkpoint["state_dict"])
    device = resolve_device("cuda" if torch.cuda.is_available() else "cpu")
    network, call = per_frame_call(module, device)
    report = speed_report(job.name, network, call, device, LATENCY_WARMUP, LATENCY_ITERS)
    del module, network, call
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the next stage's training gets the memory back
    return report


def model_overrides(inputs: Mapping[str, str], extra_args: Sequence[str]) -> dict[str, Any]:
    """The ``model`` section changes that the command line makes: the inputs and any ``--model.*`` argument."""
    pairs: list[tuple[str, Any]] = list(inputs.items())
    args = list(extra_args)
    for i, arg in enumerate(args):
        if not arg.startswith("--model."):
            continue
        key, sep, value = arg[2:].partition("=")
        if not sep:
            value = args[i + 1] if i + 1 < len(args) else ""
        pairs.append((key, yaml.safe_load(value)))
    overrides: dict[str, Any] = {}
    for key, value in pairs:
        head, *path = key.split(".")
        if head != "model" or not path:
            continue
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return overrides


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


def format_summary(evaluations: Mapping[str, StageEval]) -> str:
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
        rows.append(f"latency: median of {LATENCY_ITERS} batch-1 per-frame calls on {', '.join(devices)}")
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


def _pairs(values: Sequence[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise SetupError(f"{flag} expects STAGE=PATH, got {value!r}")
        out.append((name, rest))
    return out


def main(argv: list[str]) -> int:
    argv, extra_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(
        prog="lightning pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("chain", help="chain name under configs/pipelines/ (mixformerv2_b, mixformerv2_s) or a YAML path")
    parser.add_argument("--config", action="append", default=[], help="extra config for every stage (repeatable)")
    parser.add_argument("--stage-config", action="append", default=[], metavar="STAGE=PATH", help="extra config for one stage")
    parser.add_argument("--use", action="append", default=[], metavar="STAGE=PATH", help="skip a stage, use this checkpoint")
    parser.add_argument("--rerun", action="append", default=[], metavar="STAGE", help="run a finished stage again")
    parser.add_argument("--until", metavar="STAGE", help="stop after this stage")
    parser.add_argument("--root", type=Path, help="output folder of the chain (default: the chain's root)")
    parser.add_argument("--no-eval", action="store_true", help="do not test and time each stage's model")
    parser.add_argument("--dry-run", action="store_true", help="print the stage commands only")
    args = parser.parse_args(argv)
    chain = load_chain(args.chain)
    if args.root is not None:
        chain = Chain(chain.name, args.root, chain.stages, chain.comparisons)
    use = dict(_pairs(args.use, "--use"))
    for path in use.values():  # a checkpoint that is no data is refused now, in one line (a missing one: run_chain)
        if Path(path).exists():
            check_checkpoint_file(path)
    stage_configs: dict[str, list[str]] = {}
    for name, path in _pairs(args.stage_config, "--stage-config"):
        stage_configs.setdefault(name, []).append(path)
    run = run_chain(
        chain,
        extra_configs=args.config,
        stage_configs=stage_configs,
        use=use,
        rerun=args.rerun,
        until=args.until,
        extra_args=extra_args,
        dry_run=args.dry_run,
        evaluate=not args.no_eval,
    )
    if not args.dry_run:
        last = list(run.checkpoints)[-1]
        print(f"[pipeline] {chain.name}: finished; {last} -> {run.checkpoints[last]}")
        if run.evaluations:
            print(format_summary(run.evaluations))
            print("\n".join(format_comparisons(chain.comparisons, run.evaluations)))
            print(f"[pipeline] summary: {write_summary(chain, run.evaluations)}")
    return 0
