"""State-dict surgery on one-stream backbones: block pruning and MLP reduction (MixFormerV2 chain, spec §4).

Pure functions on suite-named state dicts (``backbone.blocks.{i}.*``), applied by
``checkpoints.load_weights(prune_blocks=..., reduce_mlp=...)`` for any family.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from torch import nn

from trackers.errors import SetupError
from trackers.models.registry import StateDict

BLOCK_KEY = re.compile(r"^(backbone\.blocks\.)(\d+)(\..*)$")


def block_indices(state: StateDict) -> list[int]:
    """The backbone block indices present in ``state``, ascending."""
    return sorted({int(m.group(2)) for k in state if (m := BLOCK_KEY.match(k))})


def prune_blocks_state_dict(state: StateDict, removed_blocks: Iterable[int]) -> StateDict:
    """Stage 2b surgery (official ``remove_layers``, spec §4.3): drop ``backbone.blocks.{i}`` for the
    removed i and renumber the survivors 0..d'-1 in order; every other key is kept."""
    removed = set(removed_blocks)
    kept = [i for i in block_indices(state) if i not in removed]
    new_index = {old: new for new, old in enumerate(kept)}
    out: StateDict = {}
    for key, value in state.items():
        m = BLOCK_KEY.match(key)
        if m is None:
            out[key] = value
        elif int(m.group(2)) in new_index:
            out[f"{m.group(1)}{new_index[int(m.group(2))]}{m.group(3)}"] = value
    return out


def reduce_mlp_state_dict(state: StateDict, hidden_features: int) -> StateDict:
    """MLP reduction init (paper §3.2.2, spec §4.6): keep the leading ``hidden_features`` units,
    fc1 rows and bias, fc2 columns (``w' = w[:d1', :d2']``); fc2 bias is unchanged."""
    out = dict(state)
    for key, value in state.items():
        if not BLOCK_KEY.match(key):
            continue
        if key.endswith("mlp.fc1.weight") or key.endswith("mlp.fc1.bias"):
            out[key] = value[:hidden_features].clone()
        elif key.endswith("mlp.fc2.weight"):
            out[key] = value[:, :hidden_features].clone()
    return out


def mlp_hidden_features(model: nn.Module) -> int:
    """The one MLP width of every block (what MLP reduction cuts a wider checkpoint to)."""
    hidden = {block.mlp.fc1.out_features for block in model.backbone.blocks}
    if len(hidden) != 1:
        raise SetupError(f"MLP reduction needs one MLP width for every block, the network has {sorted(hidden)}")
    return hidden.pop()
