"""A sweep YAML and the runs it expands into.

    name: ostrack_lr                    # W&B group, SLURM job name, default output folder
    root: outputs/sweeps/ostrack_lr     # one folder per run below it
    configs: [configs/ostrack_256.yaml] # the experiment's --config files, in order
    args: []                            # extra `lightning fit/test` arguments for every run
    pipeline: null                      # or a chain (configs/pipelines/NAME.yaml): each run is a whole chain
    grid:                               # every combination of these values (any config key)
      model.init_args.optimizer.init_args.lr: [4.0e-4, 1.0e-4]
    list:                               # and/or explicit settings, crossed with the grid
      - {model.init_args.network.init_args.depth: 4}
    seeds: [0, 1]                       # --seed_everything; the table reports mean +- std over them
    labels: {model.init_args.optimizer.init_args.lr: lr}   # short names in run names (default: last key part)
    wandb: false                        # log every run to W&B (configs/trainer/wandb.yaml; offline without key)
    resources: {nodes: 1, gpus_per_node: 4, cpus_per_task: 8, mem: 64G, time: "24:00:00", partition: gpu}

A run's name is its varied values (``lr=0.0004-depth=4-seed=0``); its folder is ``<root>/<name>``.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from trackers.errors import SetupError

SWEEP_KEYS = ("name", "root", "configs", "args", "pipeline", "grid", "list", "seeds", "labels", "wandb",
              "resources", "env", "test")
SEED_KEY = "seed_everything"


@dataclass(frozen=True)
class Resources:
    """What one run's SLURM job asks for; ``tasks_per_node`` defaults to one task per GPU (or 1 on CPU).

    ``signal_seconds``: SLURM sends SIGUSR1 that long before the time limit; Lightning's
    ``SLURMEnvironment`` then saves a checkpoint and requeues the job, which resumes from it.
    ``max_parallel``: array tasks running at once (``--array=...%N``).
    """

    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    signal_seconds: int = 300
    max_parallel: int | None = None
    extra_sbatch: tuple[str, ...] = ()

    @property
    def devices(self) -> int:
        """``--trainer.devices``: Lightning's SLURM check wants it equal to the tasks per node."""
        if self.tasks_per_node is not None:
            return self.tasks_per_node
        return max(self.gpus_per_node, 1)


@dataclass(frozen=True)
class Run:
    """One run of a sweep: the varied values (sweep axes), its seed and its folder."""

    index: int
    name: str
    setting: str  # the name without the seed: runs of one setting are averaged
    values: dict[str, Any]
    seed: int | None
    dir: Path


@dataclass(frozen=True)
class Sweep:
    name: str
    root: Path
    configs: tuple[str, ...]
    axes: tuple[str, ...]  # varied keys, in the order they appear in the YAML
    runs: tuple[Run, ...]
    resources: Resources = Resources()
    args: tuple[str, ...] = ()
    pipeline: str | None = None
    wandb: bool = False
    env: dict[str, str] = field(default_factory=dict)
    test: bool = True
    path: Path | None = None


def format_value(value: Any) -> str:
    """A value as it appears in a run name and a W&B tag (no slashes or spaces)."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return re.sub(r"[^A-Za-z0-9.,_+=-]+", "_", text).strip("_")


def _labels(keys: list[str], given: dict[str, str]) -> dict[str, str]:
    labels = {k: given.get(k, k.split(".")[-1]) for k in keys}
    for key, label in labels.items():
        if list(labels.values()).count(label) > 1 and key not in given:
            labels[key] = ".".join(key.split(".")[-2:])  # two axes end alike (e.g. template/search .size)
    if len(set(labels.values())) < len(labels):
        raise SetupError(f"sweep axes {keys} have the same short names: give them labels: {{key: short}}")
    return labels


def _settings(grid: dict[str, list[Any]], listed: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SetupError(f"{path}: grid.{key} must be a non-empty list of values")
    combos = [dict(zip(grid, c)) for c in itertools.product(*grid.values())] if grid else [{}]
    if not listed:
        return combos
    if not all(isinstance(item, dict) and item for item in listed):
        raise SetupError(f"{path}: every `list` entry must be a mapping of config keys to values")
    return [{**combo, **item} for item in listed for combo in combos]


def load_sweep(path: str | Path) -> Sweep:
    """Read and expand a sweep YAML; every mistake is one line naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise SetupError(f"sweep file {path} not found")
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = set(raw) - set(SWEEP_KEYS)
    if unknown:
        raise SetupError(f"{path}: unknown sweep keys {sorted(unknown)}; use {list(SWEEP_KEYS)}")
    name = str(raw.get("name") or path.stem)
    root = Path(raw.get("root") or Path("outputs/sweeps") / name)
    configs = tuple(str(c) for c in raw.get("configs") or [])
    pipeline = raw.get("pipeline")
    if not configs and not pipeline:
        raise SetupError(f"{path}: set `configs` (the experiment's --config files) or `pipeline`")
    res_raw = dict(raw.get("resources") or {})
    known = {f.name for f in fields(Resources)}
    if set(res_raw) - known:
        raise SetupError(f"{path}: unknown resources keys {sorted(set(res_raw) - known)}; use {sorted(known)}")
    res_raw["extra_sbatch"] = tuple(res_raw.get("extra_sbatch") or ())
    resources = Resources(**res_raw)
    grid = dict(raw.get("grid") or {})
    settings = _settings(grid, list(raw.get("list") or []), path)
    axes = list(dict.fromkeys(k for s in settings for k in s))
    if SEED_KEY in axes:
        raise SetupError(f"{path}: vary the seed with `seeds: [...]`, not as an axis")
    labels = _labels(axes, dict(raw.get("labels") or {}))
    seeds = raw.get("seeds")
    seed_list: list[int | None] = [int(s) for s in seeds] if seeds else [None]
    runs: list[Run] = []
    for setting in settings:
        setting_name = "-".join(f"{labels[k]}={format_value(v)}" for k, v in setting.items()) or "base"
        for seed in seed_list:
            run_name = setting_name if seed is None else f"{setting_name}-seed={seed}"
            runs.append(Run(len(runs), run_name, setting_name, setting, seed, root / run_name))
    if len({r.name for r in runs}) < len(runs):
        raise SetupError(f"{path}: two runs get the same name; give the axes distinct values or labels")
    return Sweep(name=name, root=root, configs=configs, axes=tuple(axes), runs=tuple(runs), resources=resources,
                 args=tuple(str(a) for a in raw.get("args") or ()), pipeline=pipeline,
                 wandb=bool(raw.get("wandb", False)), env={str(k): str(v) for k, v in (raw.get("env") or {}).items()},
                 test=bool(raw.get("test", True)), path=path)


def override_args(values: dict[str, Any]) -> list[str]:
    """``--key value`` pairs as `lightning fit` takes them (non-strings as JSON)."""
    out: list[str] = []
    for key, value in values.items():
        out += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return out
