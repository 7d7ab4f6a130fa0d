"""Checkpoint reading (official / Lightning / plain) and strict loading with one-line errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trackers.models.checkpoints import CheckpointMismatchError, load_strict, load_weights, read_checkpoint


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_reads_official_lightning_ddp_and_plain(tmp_path):
    state = _net().state_dict()
    torch.save({"epoch": 3, "net_type": "OSTrack", "net": state}, tmp_path / "official.pth.tar")
    lightning = {f"network.{k}": v for k, v in state.items()} | {f"teacher.{k}": v for k, v in state.items()}
    torch.save({"state_dict": lightning, "epoch": 1}, tmp_path / "run.ckpt")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pth")
    for name, prefix in (("official.pth.tar", None), ("run.ckpt", None), ("run.ckpt", "teacher."), ("ddp.pth", None)):
        got = read_checkpoint(tmp_path / name, prefix)
        assert got.keys() == state.keys(), name
    with pytest.raises(CheckpointMismatchError, match="student."):
        read_checkpoint(tmp_path / "run.ckpt", "student.")


def test_load_strict_names_first_problem_and_source():
    net, state = _net(), _net().state_dict()
    load_strict(net, state, "ok.pth")
    with pytest.raises(CheckpointMismatchError, match=r"a\.pth lacks key '0\.bias'"):
        load_strict(net, {k: v for k, v in state.items() if k != "0.bias"}, "a.pth")
    with pytest.raises(CheckpointMismatchError, match=r"unexpected key 'extra'"):
        load_strict(net, state | {"extra": torch.zeros(1)}, "b.pth")
    with pytest.raises(CheckpointMismatchError, match=r"'0\.weight' has shape \(4, 2\) but the model expects \(4, 3\)"):
        load_strict(net, state | {"0.weight": torch.zeros(4, 2)}, "c.pth")


def test_load_weights_loads_files_and_mappings(tmp_path):
    """A network class no family registered loads by its own names; in-memory dicts follow the file rules."""
    src = _net()
    torch.save({"net": src.state_dict()}, tmp_path / "x.pth.tar")
    dst = _net()
    load_weights(dst, tmp_path / "x.pth.tar")
    torch.testing.assert_close(dst[0].weight, src[0].weight)
    lightning = {f"module.teacher.{k}": v for k, v in src.state_dict().items()}
    dst = _net()
    load_weights(dst, lightning, prefix="teacher.")
    torch.testing.assert_close(dst[0].bias, src[0].bias)
    with pytest.raises(CheckpointMismatchError, match="the given state dict"):
        load_weights(_net(), lightning, prefix="student.")
    with pytest.raises(CheckpointMismatchError, match="lacks key"):
        load_weights(_net(), {"0.weight": src[0].weight})


def test_unreadable_container_is_reported(tmp_path):
    torch.save({"epoch": 1}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a checkpoint"):
        read_checkpoint(tmp_path / "bad.pth")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pth")


def test_official_file_with_foreign_pickled_objects_loads(tmp_path, monkeypatch):
    """Official trainer files also pickle objects of their own code (e.g. settings), not importable here."""
    import sys
    import types

    module = types.ModuleType("official_lib_settings")

    class Settings:
        def __init__(self):
            self.env = "x"

    Settings.__module__, Settings.__qualname__ = module.__name__, "Settings"
    module.Settings = Settings
    monkeypatch.setitem(sys.modules, module.__name__, module)
    state = _net().state_dict()
    torch.save({"net": state, "settings": Settings()}, tmp_path / "official.pth.tar")
    monkeypatch.delitem(sys.modules, module.__name__)
    with pytest.warns(UserWarning, match="non-tensor objects"):
        assert read_checkpoint(tmp_path / "official.pth.tar").keys() == state.keys()
