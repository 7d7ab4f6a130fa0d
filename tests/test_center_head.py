"""Centre head decoding, the Hann window, and the OSTrack forward contract."""

from __future__ import annotations

import pytest
import torch

from trackers.models.ostrack import OSTrack
from trackers.nn.heads.center import CenterHead
from trackers.nn.window import hann1d, hann2d


def test_decode_reads_size_and_offset_at_the_peak():
    score = torch.zeros(1, 1, 4, 4)
    score[0, 0, 2, 1] = 1.0  # row 2, col 1
    size = torch.zeros(1, 2, 4, 4)
    size[0, :, 2, 1] = torch.tensor([0.3, 0.2])
    offset = torch.zeros(1, 2, 4, 4)
    offset[0, :, 2, 1] = torch.tensor([0.5, 0.25])
    box = CenterHead.decode(score, size, offset)
    torch.testing.assert_close(box, torch.tensor([[(1 + 0.5) / 4, (2 + 0.25) / 4, 0.3, 0.2]]))


def test_hann_window_is_centred_without_zero_borders():
    w = hann1d(16)
    assert w.min() > 0 and torch.allclose(w, w.flip(0))
    win = hann2d(16, 16)
    assert win.shape == (1, 1, 16, 16)
    assert int(win[0, 0].flatten().argmax()) in {7 * 16 + 7, 7 * 16 + 8, 8 * 16 + 7, 8 * 16 + 8}
    assert w[0].item() == pytest.approx(0.5 * (1 - torch.cos(torch.tensor(2 * torch.pi / 17))).item())


def test_ostrack_forward_contract():
    torch.manual_seed(0)
    model = OSTrack(embed_dim=32, depth=2, num_heads=2, template_size=32, search_size=64, head_channels=16,
                    ce_loc=(1,), ce_keep_ratio=(0.5,)).eval()
    z, x = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 64, 64)
    out = model(z, x, ce_template_mask=model.ce_template_mask(2), return_features=(0,))
    assert out.boxes.shape == (2, 4) and out.score is None
    assert out.aux["score_map"].shape == (2, 1, 4, 4) and out.aux["size_map"].shape == (2, 2, 4, 4)
    assert out.aux["backbone_feat"].shape == (2, 4 + 16, 32)
    assert out.aux["removed_indexes"][0].shape == (2, 8)
    assert out.features[0].shape == (2, 20, 32)
    score = out.aux["score_map"]
    assert score.min() >= 1e-4 and score.max() <= 1 - 1e-4


TINY = dict(embed_dim=32, num_heads=2, template_size=32, search_size=64, head_channels=16)
N_T, GRID = 4, 4  # 2x2 template grid, 4x4 search grid


def _head_input(model: OSTrack, *images: torch.Tensor) -> torch.Tensor:
    """The exact feature map the centre head receives (captured at its input)."""
    seen = []
    hook = model.box_head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    model(*images)
    hook.remove()
    return seen[0]


def test_ostrack_head_reads_the_search_tokens_not_an_appended_token():
    """DyTrack's hazard: with an extra token after the search, the head must still read the search grid."""
    torch.manual_seed(0)
    model = OSTrack(depth=2, num_extra_tokens=1, **TINY).eval()
    z, x = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        final = model.finalize(model.run_blocks(model.embed(z, x), 0, 2))
        feat = _head_input(model, z, x)
    tokens = final.tokens
    assert tokens.shape[1] == N_T + GRID * GRID + 1
    search = tokens[:, N_T : N_T + GRID * GRID].transpose(1, 2).reshape(2, 32, GRID, GRID)
    torch.testing.assert_close(feat, search, rtol=0, atol=0)
    # The last grid cell is the last search token; a slice from the end would put the extra token there.
    assert not torch.equal(feat.flatten(2)[..., -1], tokens[:, -1])


def test_extra_token_reaches_the_head_only_through_attention():
    """No blocks: nothing attends, so changing the extra token cannot change what the head reads."""
    torch.manual_seed(0)
    shallow = OSTrack(depth=0, num_extra_tokens=1, **TINY).eval()
    deep = OSTrack(depth=2, num_extra_tokens=1, **TINY).eval()
    z, x = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = [_head_input(m, z, x) for m in (shallow, deep)]
        for m in (shallow, deep):
            m.backbone.reg_tokens.add_(torch.randn_like(m.backbone.reg_tokens))
        after = [_head_input(m, z, x) for m in (shallow, deep)]
    torch.testing.assert_close(after[0], before[0], rtol=0, atol=0)
    assert not torch.allclose(after[1], before[1])  # with blocks, attention carries it into the search


def test_ostrack_forward_is_the_block_interface():
    torch.manual_seed(0)
    model = OSTrack(depth=3, ce_loc=(1,), ce_keep_ratio=(0.5,), **TINY).eval()
    z, x = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 64, 64)
    mask = model.ce_template_mask(2)
    with torch.no_grad():
        full = model(z, x, mask)
        exits = {end: model.head(model.finalize(s)) for end, s in model.run_segments(model.embed(z, x, mask), (1, 3))}
    torch.testing.assert_close(exits[3].aux["score_map"], full.aux["score_map"], rtol=0, atol=0)
    assert len(exits[3].aux["removed_indexes"]) == 1 and exits[1].aux["removed_indexes"] == []
    with pytest.raises(ValueError, match="finalized"):
        model.head(model.embed(z, x))


def test_stem_residual_enters_after_the_stem():
    torch.manual_seed(0)
    head = CenterHead(8, 16).eval()
    feat = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        plain = head(feat)
        torch.testing.assert_close(head(feat, {}), plain, rtol=0, atol=0)
        torch.testing.assert_close(head.from_stems(head.stem(feat)), plain, rtol=0, atol=0)
        residual = {"ctr": torch.randn(2, 16, 4, 4)}
        recycled = head(feat, residual)
        stems = head.stem(feat)
        stems["ctr"] = stems["ctr"] + residual["ctr"]
        torch.testing.assert_close(recycled, head.from_stems(stems), rtol=0, atol=0)
    assert not torch.allclose(recycled[0], plain[0])
    torch.testing.assert_close(recycled[1:], plain[1:], rtol=0, atol=0)  # only the ctr branch got it
    with pytest.raises(ValueError, match="unknown branches"):
        head(feat, {"centre": residual["ctr"]})
