"""Centre-head labels and losses (spec compresstracker.md §1.5)."""

from __future__ import annotations

import math

import pytest
import torch

from trackers.nn.losses import focal_loss, gaussian_heatmap, gaussian_radius, giou_loss, l1_loss


def _official_style_label(box_xywh: list[float], feat: int) -> torch.Tensor:
    """Per-box reference: the official crop-and-max drawing, written as a plain loop."""
    x1, y1, w, h = (v * feat for v in box_xywh)
    cx, cy = round(x1 + w / 2), round(y1 + h / 2)
    r = int(max(gaussian_radius(torch.tensor([w, h])).item(), 0))
    sigma = (2 * r + 1) / 6
    out = torch.zeros(feat, feat)
    for yy in range(feat):
        for xx in range(feat):
            if abs(xx - cx) <= r and abs(yy - cy) <= r:
                out[yy, xx] = math.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    return out


def test_radius_of_a_four_cell_box_is_one():
    assert int(gaussian_radius(torch.tensor([4.0, 4.0])).item()) == 1


@pytest.mark.parametrize(
    "box", [[0.3, 0.4, 0.25, 0.25], [0.0, 0.0, 0.1, 0.3], [0.9, 0.85, 0.3, 0.3], [0.45, 0.1, 0.6, 0.05], [-0.2, 0.5, 0.25, 0.25]]
)
def test_heatmap_matches_reference_drawing(box):
    got = gaussian_heatmap(torch.tensor([box]), 16)[0]
    torch.testing.assert_close(got, _official_style_label(box, 16), atol=1e-6, rtol=0)


def test_heatmap_peak_is_one_at_rounded_centre():
    label = gaussian_heatmap(torch.tensor([[0.3, 0.4, 0.25, 0.25], [0.5, 0.5, 0.1, 0.1]]), 16)
    assert label.shape == (2, 16, 16)
    # centre of box 0: (0.3 + 0.125) * 16 = 6.8 -> 7, (0.4 + 0.125) * 16 = 8.4 -> 8; radius 1 -> 3x3 support.
    assert label[0, 8, 7] == 1 and (label[0] == 1).sum() == 1
    assert (label[0] > 0).sum() == 9
    assert label[0, 8, 8].item() == pytest.approx(math.exp(-2))


def test_focal_loss_matches_formula_and_handles_no_positives():
    target = torch.tensor([[1.0, 0.5], [0.0, 0.25]])
    pred = torch.tensor([[0.8, 0.3], [0.1, 0.6]])
    pos = math.log(0.8) * 0.2**2
    neg = (
        math.log(0.7) * 0.3**2 * 0.5**4 + math.log(0.9) * 0.1**2 * 1.0 + math.log(0.4) * 0.6**2 * 0.75**4
    )
    assert focal_loss(pred, target).item() == pytest.approx(-(pos + neg))
    no_pos = target.clone()
    no_pos[0, 0] = 0.9
    neg_only = neg + math.log(0.2) * 0.8**2 * 0.1**4
    assert focal_loss(pred, no_pos).item() == pytest.approx(-neg_only, rel=1e-5)


def test_giou_loss_known_boxes():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0]])
    loss, iou = giou_loss(a, b)
    assert loss.item() == pytest.approx((0.0 + 4 / 3) / 2)
    assert iou.item() == pytest.approx(0.5)
    assert l1_loss(a, b).item() == pytest.approx(4 / 8)


def test_giou_loss_degenerate_batch_is_zero_without_nan_gradient():
    pred = torch.tensor([[0.5, 0.5, 0.4, 0.9], [0.1, 0.1, 0.3, 0.3]], requires_grad=True)
    loss, _ = giou_loss(pred, torch.tensor([[0.1, 0.1, 0.6, 0.6]] * 2))
    loss.backward()
    assert loss.item() == 0 and torch.all(pred.grad == 0)
