"""Build an experiment's model from its YAML(s) without a Trainer or datasets.

The tools (`benchmark model`, `track`, `pipeline`) need the network an experiment describes, not
its data: this reads the ``model`` section of one or more composed configs (later files override
earlier ones, as with repeated ``--config``) and instantiates it with the same parser rules as
LightningCLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentParser

from trackers.errors import SetupError


def merged_section(config_paths: list[str | Path], section: str) -> dict[str, Any] | None:
    """The ``section`` of several YAMLs merged the way repeated ``--config`` merges them."""
    merged: dict[str, Any] | None = None
    for path in config_paths:
        path = Path(path)
        if not path.is_file():
            raise SetupError(f"config file {path} not found; pass an existing YAML (e.g. configs/ostrack_256.yaml)")
        data = yaml.safe_load(path.read_text()) or {}
        if section in data:
            merged = _deep_merge(merged, data[section])
    return merged


def _deep_merge(base: Any, override: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(override, dict):
        return override
    if "class_path" in override and base.get("class_path") not in (None, override["class_path"]):
        return override  # a different class replaces the whole block, as in LightningCLI
    out = dict(base)
    for key, value in override.items():
        out[key] = _deep_merge(base.get(key), value)
    return out


def build_model_from_configs(config_paths: list[str | Path], overrides: dict[str, Any] | None = None):
    """Instantiate the ``model`` (a ``TrackingModule``) of the composed configs."""
    from trackers.methods.base import TrackingModule

    section = merged_section(config_paths, "model")
    if section is None:
        raise SetupError(f"no 'model' section in {', '.join(map(str, config_paths))}")
    if overrides:
        section = _deep_merge(section, overrides)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(TrackingModule, "model")
    cfg = parser.parse_object({"model": section})
    return parser.instantiate_classes(cfg).model
