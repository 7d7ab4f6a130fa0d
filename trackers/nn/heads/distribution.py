"""MixFormerV2 box head: one shared MLP turns each prediction token into a distribution over bins.

Spec mixformerv2.md §1.8. Keys ``layers.{0,1}.{0,1}`` are the official ``MlpHead`` ones. The last
layer ends in a LayerNorm over the F logits (kept for checkpoint compatibility, spec §9 #18).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trackers.nn.box_ops import xyxy_to_cxcywh
from trackers.nn.heads.layers import mlp_layers, run_layers
from trackers.nn.heads.soft_argmax import bin_positions, expectation_1d

SIDES = ("l", "r", "t", "b")
"""Prediction-token order in the backbone sequence (the official head unbinds l, r, t, b)."""
NUM_LAYERS = 2
BINS_WEIGHT_KEY = f"layers.{NUM_LAYERS - 1}.0.weight"
"""The last Linear's weight, (F, hidden): its first dimension is the bins per side."""


class DistributionHead(nn.Module):
    """Linear -> LayerNorm -> ReLU -> Linear(F) -> LayerNorm(F), shared by the 4 side tokens.

    Bin i sits at ``i * stride`` with the float ``stride = search_size / F``; the normalised side
    coordinate is the softmax expectation ``sum_i p_i * i / F``.
    """

    def __init__(self, in_dim: int = 768, hidden_dim: int = 768, num_bins: int = 72, search_size: int = 288) -> None:
        super().__init__()
        self.num_bins = num_bins
        self.stride = search_size / num_bins
        self.layers = mlp_layers(in_dim, hidden_dim, num_bins, NUM_LAYERS, layer_norm=True)

    def forward(self, tokens: Tensor, softmax: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
        """tokens: (B, 4, C) in order l, r, t, b. Returns (box (B, 4) crop cxcywh, {prob_l, prob_t, prob_r, prob_b}).

        The box always comes from the softmax expectation; ``softmax=False`` only makes ``prob_*``
        the raw post-LayerNorm logits (what the distillation KL takes).
        """
        if tokens.shape[1] != len(SIDES):
            raise ValueError(
                f"expected {len(SIDES)} prediction tokens (l, r, t, b), "
                f"got {tokens.shape[1]}; build the backbone with num_extra_tokens={len(SIDES)}"
            )
        logits = run_layers(self.layers, tokens)
        coords, probs = expectation_1d(logits, bin_positions(self.num_bins, self.stride, logits.device))
        l, r, t, b = coords.unbind(dim=1)
        box = xyxy_to_cxcywh(torch.stack([l, t, r, b], dim=1))
        dists = probs if softmax else logits
        return box, {f"prob_{side}": dists[:, i] for i, side in enumerate(SIDES)}
