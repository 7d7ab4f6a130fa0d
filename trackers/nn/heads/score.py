"""MixFormerV2 score head: a confidence logit from the 4 prediction tokens.

Spec mixformerv2.md §1.9 / §9 #4. The official code applies the MLP to each token and averages
the 4 logits ('mlp_then_mean'); the paper averages the tokens first ('mean_then_mlp'). The MLP
is non-linear, so the two differ; both share the same weights (keys ``layers.0.0``, ``layers.1``).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from trackers.nn.heads.layers import mlp_layers, run_layers

ScoreReduction = Literal["mlp_then_mean", "mean_then_mlp"]
NUM_LAYERS = 2


class ScoreHead(nn.Module):
    """Linear(C, C) -> ReLU -> Linear(C, 1) over prediction tokens, reduced to one logit per sample."""

    def __init__(self, in_dim: int = 768, hidden_dim: int = 768, reduction: ScoreReduction = "mlp_then_mean") -> None:
        super().__init__()
        if reduction not in ("mlp_then_mean", "mean_then_mlp"):
            raise ValueError(
                f"score_reduction must be 'mlp_then_mean' (official code) or "
                f"'mean_then_mlp' (paper), got {reduction!r}"
            )
        self.reduction: ScoreReduction = reduction
        self.layers = mlp_layers(in_dim, hidden_dim, 1, NUM_LAYERS, layer_norm=False)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens: (B, K, C). Returns the logit (B,); apply sigmoid for a confidence."""
        if self.reduction == "mlp_then_mean":
            return run_layers(self.layers, tokens).mean(dim=1).flatten()
        return run_layers(self.layers, tokens.mean(dim=1)).flatten()
