"""Pre-norm ViT block, split into its two residual halves.

The split exists because candidate elimination happens between them (OSTrack CEBlock: after the
attention residual, before the MLP), and because depth pruning scales each half by a residual
factor gamma (MixFormerV2 ``remove_rate``).
"""

from __future__ import annotations

from timm.layers import DropPath, Mlp
from torch import Tensor, nn

from trackers.nn.attention import Attention, AttentionMode


class Block(nn.Module):
    """``x + DropPath(Attn(LN1 x))`` then ``x + DropPath(MLP(LN2 x))`` (timm/MAE key names).

    A block knows nothing of candidate elimination: the running backbone decides where tokens are
    eliminated (``OneStreamViT.ce_keep_ratio_at``), so a block lent to another backbone behaves as
    that backbone's block. CE and plain blocks share checkpoint keys.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
        attn_mode: AttentionMode = "full",
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, mode=attn_mode)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def set_drop_path(self, rate: float) -> None:
        self.drop_path = DropPath(rate) if rate > 0 else nn.Identity()

    def attn_residual(
        self, x: Tensor, num_template: int, gamma: float | Tensor = 1.0, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        out, attn = self.attn(self.norm1(x), num_template, need_weights)
        return x + _scaled(self.drop_path(out), gamma), attn

    def mlp_residual(self, x: Tensor, gamma: float | Tensor = 1.0) -> Tensor:
        return x + _scaled(self.drop_path(self.mlp(self.norm2(x))), gamma)

    def forward(self, x: Tensor, num_template: int, gamma: float | Tensor = 1.0) -> Tensor:
        """Plain block (no elimination), residual branches scaled by ``gamma``."""
        x, _ = self.attn_residual(x, num_template, gamma)
        return self.mlp_residual(x, gamma)


def _scaled(branch: Tensor, gamma: float | Tensor) -> Tensor:
    """Skip the multiply in the common gamma == 1 case (bit-identical to an unscaled block)."""
    if isinstance(gamma, (int, float)) and gamma == 1:
        return branch
    return gamma * branch
