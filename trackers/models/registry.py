"""Family registry: which converter turns a checkpoint into each network class's names.

A model file registers its family at import time, naming the network classes it converts for::

    register_family("mixvit", networks=(MixViT,), convert=convert_official_state_dict)

``convert(state, model)`` is model-aware, as timm's ``checkpoint_filter_fn(state_dict, model)``:
it may read the target network (its position tables, whether it has a score head). Every
converter must be idempotent on suite-named state dicts, because ``checkpoints.load_weights`` runs
all converters registered for the network's class (an OSTrack network takes official OSTrack and
CompressTracker-student names alike). ``from_teacher(state, model)`` maps a teacher of the family
onto a smaller student (CompressTracker skip init). A network whose checkpoints already use the
suite names registers nothing.

Families are discovered by importing every model file of ``trackers.models`` once, so adding a
family means adding its model file only.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

StateDict = dict[str, Tensor]
Converter = Callable[[StateDict, nn.Module], StateDict]
_NOT_MODEL_FILES = {"registry", "checkpoints", "interface", "surgery"}


@dataclass(frozen=True)
class Family:
    """name: for messages; networks: the classes whose checkpoints it converts; convert: official /
    stage checkpoint -> the model's names and layout; from_teacher: a teacher's state -> student."""

    name: str
    networks: tuple[type[nn.Module], ...]
    convert: Converter
    from_teacher: Converter | None = None


FAMILIES: dict[str, Family] = {}
_discovered = False


def register_family(
    name: str,
    *,
    networks: tuple[type[nn.Module], ...],
    convert: Converter,
    from_teacher: Converter | None = None,
) -> Family:
    family = Family(name, tuple(networks), convert, from_teacher)
    FAMILIES[name] = family
    return family


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


def families_of(network: nn.Module) -> list[Family]:
    """Every family registered for the network's class (or a base class), in registration order."""
    discover()
    return [family for family in FAMILIES.values() if isinstance(network, family.networks)]
