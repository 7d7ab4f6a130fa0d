"""`lightning pipeline CHAIN`: run a multi-stage training chain in order, each stage fed by the previous one.

    lightning pipeline mixformerv2_b
    lightning pipeline mixformerv2_s --config configs/presets/cpu_smoke.yaml --root outputs/smoke
    lightning pipeline mixformerv2_b --use mixvit_b=mixformer_vit_base_online.pth.tar   (official teacher)
    lightning pipeline mixformerv2_b --dry-run -- --trainer.devices 4

A chain is a YAML under ``configs/pipelines/`` (or any path): a ``root`` folder and a list of
stages, each with its experiment ``config`` and ``inputs`` mapping config keys to earlier stages,
e.g. ``{model.init_args.teacher_checkpoint: b_stage1}``. Each stage is an ordinary
``lightning fit`` in its own process (so DDP launches per stage), logging under
``<root>/<stage>``; when it ends it writes ``<root>/<stage>/final.ckpt`` and a ``stage.json``
record. Finished stages are reused on the next call when they were made with the same configs;
``--use STAGE=PATH`` replaces a stage by any checkpoint (a Lightning ``.ckpt`` or an official
``.pth.tar``) and ``--rerun STAGE`` runs it again.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import yaml

from trackers.errors import MissingFileError, SetupError

PIPELINES_DIR = Path("configs/pipelines")
FINAL_CHECKPOINT = "final.ckpt"
STAGE_RECORD = "stage.json"


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


@dataclass(frozen=True)
class Chain:
    name: str
    root: Path
    stages: tuple[Stage, ...]

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
    stages = tuple(
        Stage(s["name"], s["config"], dict(s.get("inputs") or {}), tuple(s.get("configs") or ())) for s in data.get("stages", [])
    )
    if not stages:
        raise SetupError(f"{path}: no stages listed under 'stages'")
    seen: set[str] = set()
    for stage in stages:
        unknown = [src for src in stage.inputs.values() if src not in seen]
        if unknown:
            raise SetupError(f"{path}: stage {stage.name!r} takes input from {unknown[0]!r}, which is not an earlier stage")
        seen.add(stage.name)
    return Chain(path.stem, Path(data.get("root", f"outputs/{path.stem}")), stages)


def stage_command(
    stage: Stage, inputs: dict[str, str], extra_configs: Sequence[str], stage_dir: Path, extra_args: Sequence[str] = ()
) -> list[str]:
    """The ``lightning fit`` command line of one stage (also what ``--dry-run`` prints)."""
    cmd = [sys.executable, "-m", "lightning_app.cli", "fit", "--config", stage.config]
    for cfg in (*stage.configs, *extra_configs):
        cmd += ["--config", cfg]
    cmd += [f"--trainer.default_root_dir={stage_dir}"]
    cmd += [f"--{key}={path}" for key, path in inputs.items()]
    cmd += [f"--trainer.callbacks+={StageCheckpoint.__module__}.{StageCheckpoint.__name__}"]
    cmd += [f"--trainer.callbacks.path={stage_dir / FINAL_CHECKPOINT}"]
    return cmd + list(extra_args)


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
    runner: Callable[[list[str]], int] = lambda cmd: subprocess.call(cmd),
) -> dict[str, str]:
    """Run (or reuse) the stages in order; returns each stage's checkpoint."""
    stage_configs, use = stage_configs or {}, use or {}
    for name in [*stage_configs, *use, *rerun, *([until] if until else [])]:
        chain.stage(name)
    outputs: dict[str, str] = {}
    for stage in chain.stages:
        if stage.name in use:
            outputs[stage.name] = _existing(use[stage.name], f"--use {stage.name}=...")
            print(f"[pipeline] {stage.name}: using {outputs[stage.name]}")
        else:
            stage_dir = chain.root / stage.name
            inputs = {key: outputs[src] for key, src in stage.inputs.items()}
            cmd = stage_command(stage, inputs, [*stage_configs.get(stage.name, []), *extra_configs], stage_dir, extra_args)
            checkpoint = stage_dir / FINAL_CHECKPOINT
            record_path = stage_dir / STAGE_RECORD
            if not dry_run and stage.name not in rerun and record_path.is_file():
                outputs[stage.name] = _reuse(stage.name, record_path, _record(cmd, checkpoint))
                print(f"[pipeline] {stage.name}: done before, reusing {outputs[stage.name]}")
            else:
                print(f"[pipeline] {stage.name}: {shlex.join(cmd)}", flush=True)
                if not dry_run:
                    _run_stage(stage.name, cmd, checkpoint, record_path, runner)
                outputs[stage.name] = str(checkpoint)
        if stage.name == until:
            break
    return outputs


def _run_stage(name: str, cmd: list[str], checkpoint: Path, record_path: Path, runner: Callable[[list[str]], int]) -> None:
    checkpoint.unlink(missing_ok=True)
    code = runner(cmd)
    if code != 0:
        raise SetupError(f"pipeline stage {name!r} failed (exit status {code}); fix it and run the pipeline again")
    if not checkpoint.is_file():
        raise SetupError(f"pipeline stage {name!r} ended without writing {checkpoint}")
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(_record(cmd, checkpoint), indent=2))


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
    parser.add_argument("--dry-run", action="store_true", help="print the stage commands only")
    args = parser.parse_args(argv)
    chain = load_chain(args.chain)
    if args.root is not None:
        chain = Chain(chain.name, args.root, chain.stages)
    stage_configs: dict[str, list[str]] = {}
    for name, path in _pairs(args.stage_config, "--stage-config"):
        stage_configs.setdefault(name, []).append(path)
    outputs = run_chain(
        chain,
        extra_configs=args.config,
        stage_configs=stage_configs,
        use=dict(_pairs(args.use, "--use")),
        rerun=args.rerun,
        until=args.until,
        extra_args=extra_args,
        dry_run=args.dry_run,
    )
    if not args.dry_run:
        last = list(outputs)[-1]
        print(f"[pipeline] {chain.name}: finished; {last} -> {outputs[last]}")
    return 0
