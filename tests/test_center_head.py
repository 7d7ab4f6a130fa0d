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
