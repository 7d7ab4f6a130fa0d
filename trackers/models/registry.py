"""Family registry: how to build each tracker family from official config names, and run its parity forward.

A model file registers its family at import time::

    register_family("mixvit", build=MixViT.from_fixture_meta, parity_outputs=_parity, convert_official=convert)

and its full-size official configurations (for manifests and presets)::

    register_official_config("experiments/mixformer_vit/teacher_mixvit_b.yaml", lambda: MixViT(...))

Families are discovered by importing every module of ``trackers.models`` once, so adding a family
means adding its model file only.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

StateDict = dict[str, Tensor]
Meta = Mapping[str, Any]
_NOT_MODEL_FILES = {"registry", "checkpoints"}


def _identity(state: StateDict) -> StateDict:
    return state


@dataclass(frozen=True)
class Family:
    """build: fixture meta (official config names) -> model; parity_outputs: (model, meta, inputs) ->
    tensors named like meta['outputs']; convert_official: official state dict -> suite names
    (must be idempotent on suite-named dicts)."""

    name: str
    build: Callable[[Meta], nn.Module]
    parity_outputs: Callable[[nn.Module, Meta, Mapping[str, Tensor]], dict[str, Tensor]]
    convert_official: Callable[[StateDict], StateDict] = _identity


FAMILIES: dict[str, Family] = {}
OFFICIAL_CONFIGS: dict[str, tuple[str, Callable[[], nn.Module]]] = {}
_discovered = False


def register_family(
    name: str,
    *,
    build: Callable[[Meta], nn.Module],
    parity_outputs: Callable[[nn.Module, Meta, Mapping[str, Tensor]], dict[str, Tensor]],
    convert_official: Callable[[StateDict], StateDict] = _identity,
) -> Family:
    family = Family(name, build, parity_outputs, convert_official)
    FAMILIES[name] = family
    return family


def register_official_config(config_yaml: str, family: str, builder: Callable[[], nn.Module]) -> None:
    """A full-size official configuration, keyed by its yaml path inside the official repository."""
    OFFICIAL_CONFIGS[config_yaml] = (family, builder)


def discover() -> None:
    """Import every model file of ``trackers.models`` so their registrations run (once)."""
    global _discovered
    if _discovered:
        return
    package = importlib.import_module("trackers.models")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in _NOT_MODEL_FILES and not info.name.startswith("_"):
            importlib.import_module(f"trackers.models.{info.name}")
    _discovered = True


def get_family(name: str) -> Family | None:
    discover()
    return FAMILIES.get(name)


def require_family(name: str) -> Family:
    family = get_family(name)
    if family is None:
        raise KeyError(
            f"no model family {name!r} registered (known: {sorted(FAMILIES)}); "
            f"add register_family({name!r}, ...) in trackers/models/<family>.py"
        )
    return family


def build_official(config_yaml: str) -> nn.Module | None:
    """Build the full-size model of an official yaml, or None when no family registered it."""
    discover()
    entry = OFFICIAL_CONFIGS.get(config_yaml)
    return None if entry is None else entry[1]()


def build_from_fixture_meta(meta: Meta) -> nn.Module:
    return require_family(meta["family"]).build(meta)


def forward_kwargs(meta: Meta, inputs: Mapping[str, Tensor]) -> dict[str, Any]:
    """The fixture's official forward call as keyword arguments (fixtures README A.2 ``forward_call.kwargs``)."""
    return {
        arg: inputs[spec["input"]] if "input" in spec else spec["value"]
        for arg, spec in meta["forward_call"]["kwargs"].items()
    }


def parity_outputs(model: nn.Module, meta: Meta, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return require_family(meta["family"]).parity_outputs(model, meta, inputs)
