"""Full-size models reproduce the official state-dict layout (key -> shape) and parameter count.

Models are built on the meta device: no memory, no init cost. Manifests whose official config is
intentionally unregistered (``parity_harness.UNREGISTERED_CONFIGS``) are skipped; an unknown one fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import fixtures_root
from parity_harness import official_config
from trackers.models.registry import families_of


def _manifests() -> list[Path]:
    root = fixtures_root() / "parity" / "manifests"
    return sorted(root.glob("*.json")) if root.is_dir() else []


@pytest.mark.parametrize("manifest", _manifests(), ids=lambda p: p.stem)
def test_manifest_layout(manifest: Path):
    spec = json.loads(manifest.read_text())
    entry = official_config(spec["config_yaml"])
    if entry is None:
        pytest.skip(f"official config {spec['config_yaml']} is intentionally unregistered")
    with torch.device("meta"):
        model = entry[1]()

    # Official names -> suite names through the network's own checkpoint converters (model-aware);
    # converters keep tensor identity when they rename, which maps each key back to its manifest entry.
    official = {k["key"]: torch.empty(k["shape"], dtype=getattr(torch, k["dtype"]), device="meta") for k in spec["keys"]}
    by_tensor = {id(official[k["key"]]): k for k in spec["keys"]}
    state = dict(official)
    for family in families_of(model):
        state = family.convert(state, model)
    entries = {name: by_tensor[id(t)] for name, t in state.items()}
    expected = {name: tuple(k["shape"]) for name, k in entries.items()}
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(expected) - set(got))[:3] == [], "keys missing from the model"
    assert sorted(set(got) - set(expected))[:3] == [], "keys the official model does not have"
    assert got == expected
    assert len(got) == spec["num_keys"]
    dtypes = {k: str(v.dtype).removeprefix("torch.") for k, v in model.state_dict().items()}
    assert dtypes == {name: k["dtype"] for name, k in entries.items()}

    params = dict(model.named_parameters())
    assert sum(p.numel() for p in params.values()) == spec["total_parameters"]
    frozen = {name for name, k in entries.items() if k["kind"] == "parameter" and not k["requires_grad"]}
    assert {k for k, p in params.items() if not p.requires_grad} == frozen
    buffers = {name for name, k in entries.items() if k["kind"] == "buffer"}
    assert {k for k, _ in model.named_buffers()} == buffers


def test_unknown_official_config_fails_instead_of_skipping():
    assert official_config("experiments/mixformer_vit_online/baseline.yaml") is None
    with pytest.raises(KeyError, match="UNREGISTERED_CONFIGS"):
        official_config("experiments/ostrack/vitb_256_mae_ce_32x4_ep30.yaml")
