"""The one place that reads checkpoints and loads them strictly.

Accepted anywhere a checkpoint is expected (teacher, initialisation, evaluation):
- an official ``.pth.tar`` (weights under ``['net']``, official key names, converted per family);
- a Lightning ``.ckpt`` (``['state_dict']``; the network's prefix, ``model.`` by default, is stripped);
- a plain state dict.
A DDP ``module.`` prefix is stripped when every key has it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from trackers.errors import BadFileError, MissingFileError, SetupError
from trackers.models.registry import StateDict, require_family
from trackers.models.safe_unpickling import load_checkpoint_data

LIGHTNING_MODEL_PREFIX = "network."  # every TrackingModule keeps its deployable network as `self.network`
DDP_PREFIX = "module."


class CheckpointMismatchError(SetupError):
    """A state dict does not fit a module exactly (missing, unexpected or mis-shaped key)."""


def read_checkpoint(path: str | Path, prefix: str | None = None) -> StateDict:
    """State dict of ``path``; ``prefix`` selects a sub-network of a Lightning checkpoint (e.g. 'teacher.')."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint {path} does not exist; fix the checkpoint path in the config or command line")
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("net"), Mapping):
        state = dict(obj["net"])
    elif isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        state = dict(obj["state_dict"])
        prefix = LIGHTNING_MODEL_PREFIX if prefix is None else prefix
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        state = dict(obj)
    else:
        raise BadFileError(
            f"{path} is not a checkpoint: expected ['net'] (official .pth.tar), "
            f"['state_dict'] (Lightning .ckpt) or a plain state dict"
        )
    state = strip_prefix(state, DDP_PREFIX) if state and all(k.startswith(DDP_PREFIX) for k in state) else state
    if prefix:
        selected = {k: v for k, v in state.items() if k.startswith(prefix)}
        if not selected:
            raise CheckpointMismatchError(
                f"no key of {path} starts with {prefix!r}; pass the prefix the "
                f"LightningModule uses for this network"
            )
        state = strip_prefix(selected, prefix)
    return state


def strip_prefix(state: StateDict, prefix: str) -> StateDict:
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}


def add_prefix(state: StateDict, prefix: str) -> StateDict:
    return {prefix + k: v for k, v in state.items()}


def load_strict(module: nn.Module, state_dict: Mapping[str, Tensor], source_name: str) -> None:
    """Load with every key used and every shape equal, else raise one line naming the first problem."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]

    def more(keys: list[str]) -> str:
        return f" (+{len(keys) - 1} more)" if len(keys) > 1 else ""

    where = f"checkpoint {source_name}"
    if missing:
        raise CheckpointMismatchError(
            f"{where} lacks key {missing[0]!r}{more(missing)}; the model config does not match the checkpoint"
        )
    if unexpected:
        raise CheckpointMismatchError(
            f"{where} has unexpected key {unexpected[0]!r}{more(unexpected)}; "
            f"convert it for this family or build the matching model"
        )
    if mismatched:
        k = mismatched[0]
        raise CheckpointMismatchError(
            f"{where}: key {k!r} has shape {tuple(state_dict[k].shape)} but the model expects "
            f"{tuple(own[k].shape)}{more(mismatched)}; fix the model size in the config"
        )
    module.load_state_dict(state_dict, strict=True)


def load_checkpoint(module: nn.Module, path: str | Path, family: str | None = None, prefix: str | None = None) -> None:
    """Read ``path`` (official / Lightning / plain), convert official names of ``family``, load strictly."""
    state = read_checkpoint(path, prefix)
    if family is not None:
        state = require_family(family).convert_official(state)
    load_strict(module, state, str(path))


def _torch_load(path: Path) -> Any:
    """The file's content as data: tensors-only, else an allow-list with inert stand-ins; no code from it runs."""
    return load_checkpoint_data(path)
