"""Block-by-block driving of OneStreamViT: the interface stage swapping, early exits and layer decay rely on."""

from __future__ import annotations

import math

import pytest
import torch

from trackers.nn.attention import Attention
from trackers.nn.candidate_elimination import template_centre_mask
from trackers.nn.vit import OneStreamViT

DIM, HEADS, DEPTH, PATCH, TEMPLATE, SEARCH = 32, 2, 4, 16, 32, 64  # 2x2 template grid, 4x4 search grid


def tiny(**kw) -> OneStreamViT:
    torch.manual_seed(0)
    args = dict(embed_dim=DIM, depth=DEPTH, num_heads=HEADS, patch_size=PATCH, template_size=TEMPLATE, search_size=SEARCH)
    return OneStreamViT(**(args | kw)).eval()


def images(batch: int = 2, templates: int = 1, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, templates, 3, TEMPLATE, TEMPLATE, generator=g), torch.randn(batch, 3, SEARCH, SEARCH, generator=g)


@pytest.mark.parametrize("ce", [False, True])
def test_split_run_blocks_equals_forward(ce: bool):
    vit = tiny(ce_loc=(1, 2), ce_keep_ratio=(0.5, 0.7)) if ce else tiny()
    z, x = images()
    full = vit(z, x, return_features=(0, 2))
    state = vit.run_blocks(vit.embed(z, x), 0, 2)
    state = vit.run_blocks(state, 2, DEPTH)
    torch.testing.assert_close(vit.finalize(state).tokens, full.tokens, rtol=0, atol=0)
    torch.testing.assert_close(vit.run_blocks(vit.embed(z, x), 0, 3).tokens, full.features[2], rtol=0, atol=0)
    assert sorted(full.features) == [0, 2]


def test_candidate_elimination_bookkeeping():
    vit = tiny(ce_loc=(1, 2), ce_keep_ratio=(0.5, 0.7), ce_template_range="CTR_POINT")
    z, x = images()
    out = vit(z, x, ce_template_mask=vit.ce_template_mask(2))
    n_s = (SEARCH // PATCH) ** 2
    kept1 = math.ceil(0.5 * n_s)
    assert [r.shape[1] for r in out.removed_indexes] == [n_s - kept1, kept1 - math.ceil(0.7 * kept1)]
    search = out.tokens[:, -n_s:]
    removed = torch.cat(out.removed_indexes, dim=1)
    for b in range(2):
        assert len(set(removed[b].tolist())) == removed.shape[1]
        assert torch.all(search[b, removed[b]] == 0)
        kept = sorted(set(range(n_s)) - set(removed[b].tolist()))
        assert torch.all(search[b, kept].abs().sum(-1) > 0)


def test_ce_keep_rate_overrides_and_disables():
    vit = tiny(ce_loc=(1,), ce_keep_ratio=(0.5,))
    z, x = images()
    n_s = (SEARCH // PATCH) ** 2
    assert vit(z, x, ce_keep_rate=0.75).removed_indexes[0].shape[1] == n_s - math.ceil(0.75 * n_s)
    assert vit(z, x, ce_keep_rate=1.0).removed_indexes == ()
    torch.testing.assert_close(vit(z, x, ce_keep_rate=1.0).tokens, tiny()(z, x).tokens)


@pytest.mark.parametrize("mode", ["branch", "block"])
def test_zero_gamma_equals_removing_the_block(mode: str):
    vit = tiny(gamma_mode=mode)
    z, x = images()
    decayed = vit(z, x, gamma={1: 0.0}).tokens
    torch.testing.assert_close(vit(z, x, gamma=[1.0, 0.0, 1.0, 1.0]).tokens, decayed)
    kept = [vit.blocks[i] for i in (0, 2, 3)]
    vit.remove_blocks([1])
    assert vit.depth == 3 and all(a is b for a, b in zip(vit.blocks, kept))
    assert "blocks.3.norm1.weight" not in vit.state_dict() and "blocks.2.norm1.weight" in vit.state_dict()
    torch.testing.assert_close(vit(z, x).tokens, decayed, rtol=0, atol=1e-6)


def test_gamma_modes_agree_at_one_and_differ_in_between():
    z, x = images()
    branch, block = tiny(gamma_mode="branch"), tiny(gamma_mode="block")
    torch.testing.assert_close(branch(z, x, gamma={2: 1.0}).tokens, block(z, x, gamma={2: 1.0}).tokens)
    assert not torch.allclose(branch(z, x, gamma={2: 0.5}).tokens, block(z, x, gamma={2: 0.5}).tokens, atol=1e-4)


def test_run_blocks_with_foreign_blocks():
    student, teacher = tiny(depth=2), tiny(depth=DEPTH)
    z, x = images()
    state = student.embed(z, x)
    hybrid = student.run_blocks(state, 1, 3, blocks=teacher.blocks)
    expected = teacher.blocks[2](teacher.blocks[1](state.tokens, state.num_template), state.num_template)
    torch.testing.assert_close(hybrid.tokens, expected, rtol=0, atol=0)


def test_lent_ce_blocks_eliminate_only_when_asked():
    """CE belongs to the running backbone: a CE teacher's blocks in a plain student path keep every token."""
    student, teacher = tiny(depth=2), tiny(depth=DEPTH, ce_loc=(1, 2), ce_keep_ratio=(0.5, 0.5))
    plain_teacher = tiny(depth=DEPTH)  # same seed: the same weights, without CE
    z, x = images()
    lent = student.run_blocks(student.embed(z, x), 0, DEPTH, blocks=teacher.blocks)
    assert lent.removed_indexes == () and lent.num_search == lent.total_search
    unlent = plain_teacher.run_blocks(student.embed(z, x), 0, DEPTH)
    torch.testing.assert_close(lent.tokens, unlent.tokens, rtol=0, atol=0)
    asked = student.run_blocks(
        student.embed(z, x), 0, DEPTH, blocks=teacher.blocks, ce_keep_ratios=teacher.ce_keep_ratios
    )
    own = teacher(z, x)
    assert len(asked.removed_indexes) == 2
    torch.testing.assert_close(student.finalize(asked).tokens, own.tokens, rtol=0, atol=0)


def test_pruning_renumbers_the_backbones_ce_blocks():
    vit = tiny(ce_loc=(1, 3), ce_keep_ratio=(0.5, 0.7))
    vit.remove_blocks([0])
    assert vit.ce_keep_ratios == {0: 0.5, 2: 0.7}
    assert vit.ce_keep_ratio_at(0) == 0.5 and vit.ce_keep_ratio_at(1) == 1.0


def test_iter_blocks_stops_early_and_matches_features():
    vit = tiny(ce_loc=(1,), ce_keep_ratio=(0.5,))
    z, x = images()
    full = vit(z, x, return_features=range(DEPTH))
    ran = []
    calls = {"n": 0}
    hook = vit.blocks[DEPTH - 1].register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    for i, state in vit.iter_blocks(vit.embed(z, x)):
        ran.append(i)
        torch.testing.assert_close(state.tokens, full.features[i], rtol=0, atol=0)
        if i == 1:
            break
    hook.remove()
    assert ran == [0, 1] and calls["n"] == 0  # the later blocks never ran


def test_token_state_reads_parts_by_name():
    vit = tiny(num_extra_tokens=3, ce_loc=(1,), ce_keep_ratio=(0.5,))
    z, x = images()
    state = vit.run_blocks(vit.embed(z, x), 0, 2)
    n_t, n_s = (TEMPLATE // PATCH) ** 2, (SEARCH // PATCH) ** 2
    assert state.template_tokens.shape[1] == n_t and state.search_tokens.shape[1] == n_s // 2
    torch.testing.assert_close(state.extra_tokens, state.tokens[:, -3:], rtol=0, atol=0)
    with pytest.raises(ValueError, match="finalize"):
        state.search_map()  # pruned search: no grid to read
    final = vit.finalize(state)
    grid = final.search_map()
    assert grid.shape == (2, DIM, SEARCH // PATCH, SEARCH // PATCH)
    torch.testing.assert_close(grid.flatten(2).transpose(1, 2), final.tokens[:, n_t : n_t + n_s], rtol=0, atol=0)
    torch.testing.assert_close(final.extra_tokens, vit.norm(state.extra_tokens), rtol=0, atol=0)
    with pytest.raises(ValueError, match="finalized"):
        vit.run_blocks(final, 2, DEPTH)


def test_asymmetric_template_tokens_ignore_search_and_extras():
    vit = tiny(num_templates=2, pos_embed="sincos", attn_mode="asymmetric", num_extra_tokens=4, final_norm=False)
    z, x = images(templates=2)
    _, x2 = images(templates=2, seed=7)
    a, b = vit(z, x).tokens, vit(z, x2).tokens
    n_t = 2 * (TEMPLATE // PATCH) ** 2
    assert a.shape[1] == n_t + (SEARCH // PATCH) ** 2 + 4
    torch.testing.assert_close(a[:, :n_t], b[:, :n_t], rtol=0, atol=0)
    assert not torch.allclose(a[:, n_t:], b[:, n_t:])
    with torch.no_grad():
        vit.reg_tokens.add_(torch.randn_like(vit.reg_tokens))  # a constant shift would vanish in LayerNorm
    c = vit(z, x).tokens
    torch.testing.assert_close(c[:, :n_t], a[:, :n_t], rtol=0, atol=0)
    assert not torch.allclose(c[:, n_t:-4], a[:, n_t:-4])


@pytest.mark.parametrize("mode", ["full", "asymmetric"])
def test_explicit_attention_matches_fused(mode: str):
    torch.manual_seed(0)
    attn = Attention(DIM, HEADS, mode=mode)
    x = torch.randn(2, 10, DIM)
    fused, none = attn(x, num_template=4)
    explicit, weights = attn(x, num_template=4, need_weights=True)
    assert none is None and weights.shape == (2, HEADS, 10, 10)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-6)
    if mode == "asymmetric":
        assert torch.all(weights[:, :, :4, 4:] == 0)


def test_per_block_mlp_ratio_and_drop_path():
    vit = OneStreamViT(embed_dim=DIM, depth=3, num_heads=HEADS, mlp_ratio=[4.0, 1.0, 2.0], drop_path_rate=0.2,
                       template_size=TEMPLATE, search_size=SEARCH)
    assert [b.mlp.fc1.out_features for b in vit.blocks] == [4 * DIM, DIM, 2 * DIM]
    assert [getattr(b.drop_path, "drop_prob", 0.0) for b in vit.blocks] == pytest.approx([0.0, 0.1, 0.2])


def test_template_count_is_checked():
    z, x = images(templates=2)
    with pytest.raises(ValueError, match="num_templates"):
        tiny()(z, x)


def test_ce_template_masks():
    point = template_centre_mask(1, (8, 8), "CTR_POINT")[0].nonzero().flatten().tolist()
    rec = template_centre_mask(1, (8, 8), "CTR_REC")[0].nonzero().flatten().tolist()
    assert point == [27] and rec == [27, 28, 35, 36]
    assert template_centre_mask(1, (7, 7), "CTR_POINT")[0].nonzero().flatten().tolist() == [24]
    assert template_centre_mask(1, (12, 12), "CTR_POINT")[0].nonzero().flatten().tolist() == [65]
    assert template_centre_mask(3, (8, 8), "ALL") is None


@pytest.mark.parametrize("gamma", [0.0, 1.0])
def test_gamma_modes_agree_with_candidate_elimination(gamma: float):
    ce = dict(ce_loc=(1,), ce_keep_ratio=(0.5,))
    z, x = images()
    branch = tiny(gamma_mode="branch", **ce)(z, x, gamma={1: gamma})
    block = tiny(gamma_mode="block", **ce)(z, x, gamma={1: gamma})
    torch.testing.assert_close(branch.tokens, block.tokens, rtol=0, atol=1e-6)
    assert set(branch.removed_indexes[0][0].tolist()) == set(block.removed_indexes[0][0].tolist())
