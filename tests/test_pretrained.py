"""MAE initialisation from a small synthetic MAE-format file."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from trackers.nn.pretrained import load_mae_into
from trackers.nn.vit import OneStreamViT

DIM = 32


def _mae_file(tmp_path, depth: int = 3):
    g = torch.Generator().manual_seed(0)
    donor = OneStreamViT(embed_dim=DIM, depth=depth, num_heads=2, unused_timm_params=("cls_token", "pos_embed"))
    state = {k: torch.randn(v.shape, generator=g) for k, v in donor.state_dict().items() if not k.startswith("pos_embed_")}
    state["mask_token"] = torch.zeros(1, 1, DIM)
    state["decoder_embed.weight"] = torch.zeros(16, DIM)
    path = tmp_path / "mae_pretrain_vit_base.pth"
    torch.save({"model": state, "epoch": 1599}, path)
    return path, state


def _backbone(**kw) -> OneStreamViT:
    args = dict(embed_dim=DIM, depth=2, num_heads=2, template_size=128, search_size=256)
    return OneStreamViT(**(args | kw))


def test_learned_tables_are_bicubic_resizes_of_mae(tmp_path):
    path, mae = _mae_file(tmp_path)
    vit = _backbone(unused_timm_params=("cls_token", "pos_embed"))
    report = load_mae_into(vit, path)
    grid = mae["pos_embed"][:, 1:].reshape(1, 14, 14, DIM).permute(0, 3, 1, 2)
    for table, side in ((vit.pos_embed_z, 8), (vit.pos_embed_x, 16)):
        ref = F.interpolate(grid, size=(side, side), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
        torch.testing.assert_close(table.detach(), ref)
    torch.testing.assert_close(vit.blocks[1].attn.qkv.weight.detach(), mae["blocks.1.attn.qkv.weight"])
    torch.testing.assert_close(vit.pos_embed.detach(), mae["pos_embed"])
    assert report.missing == ()
    assert {"mask_token", "decoder_embed.weight", "blocks.2.mlp.fc1.weight"} <= set(report.unused)


def test_sincos_tables_are_left_alone(tmp_path):
    path, _ = _mae_file(tmp_path)
    vit = _backbone(pos_embed="sincos", final_norm=False, num_extra_tokens=4)
    before = vit.pos_embed_s.detach().clone()
    report = load_mae_into(vit, path)
    torch.testing.assert_close(vit.pos_embed_s.detach(), before, rtol=0, atol=0)
    assert set(report.missing) == {"reg_tokens", "pos_embed_reg"}
    assert {"pos_embed", "cls_token", "norm.weight"} <= set(report.unused)


def test_width_mismatch_is_one_clear_error(tmp_path):
    path, _ = _mae_file(tmp_path)
    with pytest.raises(ValueError, match="MAE tensor .* shape"):
        load_mae_into(OneStreamViT(embed_dim=64, depth=1, num_heads=2), path)


def test_unreachable_hub_names_the_local_file_option(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match=r"pretrained: /path/mae_pretrain_vit_base\.pth"):
        load_mae_into(_backbone(), "mae")


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrained"):
        load_mae_into(_backbone(), tmp_path / "nope.pth")


def test_load_weights_pretrained_is_the_mae_path_for_networks_and_backbones(tmp_path):
    """The one entry point: MAE into a tracker's backbone equals ``load_mae_into``; a backbone's own state too."""
    from trackers.models.checkpoints import load_weights
    from trackers.models.ostrack import OSTrack

    path, _ = _mae_file(tmp_path)
    direct = _backbone(unused_timm_params=("cls_token", "pos_embed"))
    load_mae_into(direct, path)
    torch.manual_seed(3)
    network = OSTrack(embed_dim=DIM, depth=2, num_heads=2, head_channels=16)
    report = load_weights(network, path, source="pretrained")
    assert "mask_token" in report.unused and not report.missing
    for key, value in direct.state_dict().items():
        torch.testing.assert_close(network.backbone.state_dict()[key], value, rtol=0, atol=0)
    other = _backbone(unused_timm_params=("cls_token", "pos_embed"))
    load_weights(other, network.backbone.state_dict(), source="pretrained")
    torch.testing.assert_close(other.blocks[1].mlp.fc2.weight, network.backbone.blocks[1].mlp.fc2.weight)
    with pytest.raises(ValueError, match="prune_blocks"):
        load_weights(network, path, source="pretrained", prune_blocks=(0,))
