"""The one freezing policy (trackers.freezing): eval pins eval mode, train follows the parent's mode."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from trackers.freezing import freeze, freeze_parameters, is_frozen


def _head() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))


def test_eval_mode_pins_eval_through_parent_train_calls():
    parent = nn.Sequential(nn.Linear(4, 4), _head())
    freeze(parent[1], mode="eval")
    parent.train()
    assert parent.training and parent[0].training
    assert not any(m.training for m in parent[1].modules())
    assert is_frozen(parent[1]) and is_frozen(parent[1], mode="train")
    assert all(p.requires_grad for p in parent[0].parameters())


def test_eval_mode_keeps_batchnorm_statistics():
    head = freeze(_head(), mode="eval")
    before = head[1].running_mean.clone()
    head.train()
    head(torch.randn(8, 4) + 3.0)
    torch.testing.assert_close(head[1].running_mean, before)


def test_train_mode_follows_the_parent_and_keeps_batch_statistics():
    parent = nn.Sequential(nn.Linear(4, 4), _head())
    freeze(parent[1], mode="train")
    parent.eval()
    assert not parent[1].training
    parent.train()
    assert all(m.training for m in parent[1].modules())  # dropout (and DropPath) active
    assert not any(p.requires_grad for p in parent[1].parameters())
    assert is_frozen(parent[1], mode="train") and not is_frozen(parent[1], mode="eval")
    before = parent[1][1].running_mean.clone()
    parent(torch.randn(8, 4) + 3.0)
    assert not torch.equal(parent[1][1].running_mean, before)  # the official teacher's BatchNorm keeps updating
    out = parent(torch.randn(8, 4))
    out.sum().backward()
    assert all(p.grad is None for p in parent[1].parameters()) and parent[0].weight.grad is not None


def test_train_mode_lifts_an_earlier_eval_pin():
    head = freeze(_head(), mode="eval")
    freeze(head, mode="train")
    head.train()
    assert head.training


def test_freeze_parameters_and_bad_mode():
    param = nn.Parameter(torch.zeros(2))
    freeze_parameters([param])
    assert not param.requires_grad
    with pytest.raises(ValueError, match="freeze mode"):
        freeze(_head(), mode="frozen")


def test_eval_pin_survives_deepcopy():
    clone = copy.deepcopy(freeze(_head(), mode="eval"))
    clone.train()
    assert not clone.training and not clone[2].training
