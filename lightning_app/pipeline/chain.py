"""A chain YAML (``configs/pipelines/<name>.yaml``): stages in order, the inputs they take, the comparisons."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trackers.errors import MissingFileError, SetupError

PIPELINES_DIR = Path("configs/pipelines")


@dataclass(frozen=True)
class Stage:
    """One training run of a chain: its experiment ``config``, fragments, and the checkpoints it takes."""

    name: str
    config: str
    inputs: dict[str, str] = field(default_factory=dict)  # config key -> earlier stage name
    configs: tuple[str, ...] = ()  # extra fragments of this stage
    presets: dict[str, tuple[str, ...]] = field(default_factory=dict)  # preset path -> fragments following it
    shared: bool = False  # run once even when the chain has seeds (e.g. the teacher every seed's arms learn from)

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
    """Stages in order; with ``seeds`` every stage not ``shared`` runs once per seed (``--seed_everything``),
    fed by the same seed's earlier stages, so comparisons can report a spread; ``baselines`` are
    checkpoint-free trackers (``configs/baselines/*.yaml``) tested on the chain's benchmark."""

    name: str
    root: Path
    stages: tuple[Stage, ...]
    comparisons: tuple[Comparison, ...] = ()
    seeds: tuple[int, ...] = ()
    baselines: dict[str, str] = field(default_factory=dict)  # name -> config fragment

    def stage_seeds(self, name: str) -> tuple[int | None, ...]:
        """The seeds stage ``name`` runs with: (None,) once with its config's seed."""
        return (None,) if self.stage(name).shared or not self.seeds else self.seeds

    def instance(self, name: str, seed: int | None) -> str:
        """The run of stage ``name`` for ``seed`` (its folder under ``root``): ``name`` or ``name/seed<k>``;
        a shared stage has one run whatever the seed."""
        return name if seed is None or self.stage(name).shared or not self.seeds else f"{name}/seed{seed}"

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
    seeds = data.get("seeds") or []
    if not isinstance(seeds, list) or not all(isinstance(k, int) for k in seeds) or len(set(seeds)) != len(seeds):
        raise SetupError(f"{path}: 'seeds' is a list of distinct integers, got {seeds!r}")
    baselines = data.get("baselines") or {}
    if not isinstance(baselines, dict) or set(baselines) & seen:
        raise SetupError(f"{path}: 'baselines' maps a name (not a stage's) to a config fragment, got {baselines!r}")
    return Chain(path.stem, Path(data.get("root", f"outputs/{path.stem}")), stages, comparisons, tuple(seeds),
                 {str(k): str(v) for k, v in baselines.items()})


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
        bool(entry.get("shared", False)),
    )
