"""The one place that reads checkpoints and loads weights into networks.

``load_weights(network, path_or_state, ...)`` is the entry point (teacher, initialisation,
evaluation, ``track``, MAE). It accepts:
- an official ``.pth.tar`` (weights under ``['net']``, official key names);
- a Lightning ``.ckpt`` (``['state_dict']``; the network's prefix, ``network.`` by default, or
  e.g. ``teacher.``, is stripped);
- a plain state dict (a file or an in-memory mapping).
A DDP ``module.`` prefix is stripped when every key has it. The converters of the network's
families (``registry.families_of``, model-aware) then bring the names and layout to the network,
and the result is loaded strictly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from torch import Tensor, nn

from trackers.errors import BadFileError, MissingFileError, SetupError
from trackers.models.registry import StateDict, families_of
from trackers.models.surgery import (
    block_indices,
    mlp_hidden_features,
    prune_blocks_state_dict,
    reduce_mlp_state_dict,
)
from trackers.nn.pretrained import PretrainedReport, load_vit_state_into, read_mae_state_dict
from trackers.nn.vit import OneStreamViT
from trackers.safe_unpickling import load_checkpoint_data

LIGHTNING_MODEL_PREFIX = "network."  # every TrackingModule keeps its deployable network as `self.network`
DDP_PREFIX = "module."
WeightSource = Literal["checkpoint", "teacher", "pretrained"]
IN_MEMORY = "the given state dict"
PRUNED_BLOCKS_KEY = "pruned_blocks"
"""Lightning checkpoint entry of a run that removed blocks in-run (MixFormerV2 progressive depth pruning)."""


class CheckpointMismatchError(SetupError):
    """A state dict does not fit a module exactly (missing, unexpected or mis-shaped key)."""


def read_checkpoint(path: str | Path, prefix: str | None = None) -> StateDict:
    """State dict of ``path``; ``prefix`` selects a sub-network of a Lightning checkpoint (e.g. 'teacher.')."""
    return _read_container(path, prefix)[0]


def _read_container(path: str | Path, prefix: str | None) -> tuple[StateDict, tuple[int, ...]]:
    """(state dict, blocks a depth-pruning run removed in-run: a Lightning checkpoint's ``pruned_blocks``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint {path} does not exist; fix the checkpoint path in the config or command line")
    obj = _torch_load(path)
    pruned: tuple[int, ...] = ()
    if isinstance(obj, Mapping) and isinstance(obj.get("net"), Mapping):
        state = dict(obj["net"])
    elif isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        state = dict(obj["state_dict"])
        if prefix is None:
            prefix = LIGHTNING_MODEL_PREFIX
            pruned = tuple(int(i) for i in obj.get(PRUNED_BLOCKS_KEY) or ())
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        state = dict(obj)
    else:
        raise BadFileError(
            f"{path} is not a checkpoint: expected ['net'] (official .pth.tar), "
            f"['state_dict'] (Lightning .ckpt) or a plain state dict"
        )
    return _select(state, prefix, str(path)), pruned


def strip_prefix(state: StateDict, prefix: str) -> StateDict:
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}


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


def load_weights(
    network: nn.Module,
    path_or_state: str | Path | Mapping[str, Tensor],
    *,
    source: WeightSource = "checkpoint",
    prefix: str | None = None,
    prune_blocks: Iterable[int] = (),
    reduce_mlp: bool = False,
) -> PretrainedReport:
    """Load weights into ``network``; the converters come from the network's class, never from its name.

    source:
        'checkpoint': weights of this network's family (official ``.pth.tar`` of any stage, Lightning
            ``.ckpt``, plain state dict), converted by every family registered for the network's
            class, then loaded strictly.
        'teacher': a teacher of the family (e.g. a 12-block OSTrack), mapped onto the smaller
            ``network`` by the family's ``from_teacher`` rule (CompressTracker skip init), strictly.
        'pretrained': timm-named ViT weights into ``network.backbone`` (or ``network`` itself when
            it is a ``OneStreamViT``) by name: 'mae' (timm hub), an MAE file, or another backbone's
            state dict; the report lists what was left at init and what was unused.
    prefix: sub-network of a Lightning checkpoint ('network.' by default, 'teacher.' for a teacher).
    prune_blocks: drop these blocks of the checkpoint and renumber the rest (a depth-pruning run that
        ended with its faded blocks still in); reduce_mlp: keep the leading MLP units that fit the
        network (MLP reduction). Both only with source='checkpoint'. A Lightning checkpoint of a run
        that removed blocks in-run (``pruned_blocks``) prunes a network still at the run's first depth.
    """
    name = IN_MEMORY if isinstance(path_or_state, Mapping) else str(path_or_state)
    removed = tuple(prune_blocks)
    if source != "checkpoint" and (removed or reduce_mlp):
        raise ValueError(f"prune_blocks / reduce_mlp apply to source='checkpoint', not {source!r}")
    if source == "pretrained":
        backbone = network if isinstance(network, OneStreamViT) else network.backbone
        state = dict(path_or_state) if isinstance(path_or_state, Mapping) else read_mae_state_dict(path_or_state)
        return load_vit_state_into(backbone, state, name)
    if isinstance(path_or_state, Mapping):
        state, pruned_in_run = _select(dict(path_or_state), prefix, name), ()
    else:
        state, pruned_in_run = _read_container(path_or_state, prefix)
    if pruned_in_run and source == "checkpoint":
        _prune_network_like_the_run(network, state, pruned_in_run)
    families = families_of(network)
    for family in families:
        state = family.convert(state, network)
    if source == "teacher":
        rules = [family for family in families if family.from_teacher is not None]
        if not rules:
            raise SetupError(
                f"no family of {type(network).__name__} maps a teacher's weights onto it; "
                f"load a checkpoint of the network itself instead"
            )
        state = rules[0].from_teacher(state, network)
    if removed:
        state = prune_blocks_state_dict(state, removed)
    if reduce_mlp:
        state = reduce_mlp_state_dict(state, mlp_hidden_features(network))
    load_strict(network, state, name)
    return PretrainedReport(name, (), ())


def _prune_network_like_the_run(network: nn.Module, state: StateDict, pruned: tuple[int, ...]) -> None:
    """A checkpoint written after in-run pruning holds the shallower network: remove the same blocks
    from a network still built at the run's initial depth (as the method's ``on_load_checkpoint`` does)."""
    backbone = getattr(network, "backbone", None)
    if isinstance(backbone, OneStreamViT) and backbone.depth == len(block_indices(state)) + len(pruned):
        backbone.remove_blocks(pruned)


def _select(state: StateDict, prefix: str | None, name: str) -> StateDict:
    """The DDP and sub-network prefix rules of ``read_checkpoint``, for an in-memory state dict."""
    state = strip_prefix(state, DDP_PREFIX) if state and all(k.startswith(DDP_PREFIX) for k in state) else state
    if not prefix:
        return state
    selected = {k: v for k, v in state.items() if k.startswith(prefix)}
    if not selected:
        raise CheckpointMismatchError(
            f"no key of {name} starts with {prefix!r}; pass the prefix the LightningModule uses for this network"
        )
    return strip_prefix(selected, prefix)


def _torch_load(path: Path) -> Any:
    """The file's content as data: tensors-only, else an allow-list with inert stand-ins; no code from it runs."""
    return load_checkpoint_data(path)


def load_initial_weights(network: nn.Module, pretrained: str | None, init_checkpoint: str | None) -> None:
    """A trained-from-scratch method's start when fitting begins: the backbone's pretrained weights
    (``pretrained``: ``mae`` or a file), then a whole checkpoint (``init_checkpoint``) over them."""
    if pretrained:
        load_weights(network, pretrained, source="pretrained")
    if init_checkpoint:
        load_weights(network, init_checkpoint)
