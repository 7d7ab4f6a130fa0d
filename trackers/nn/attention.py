"""Multi-head self-attention with OSTrack's full mode and MixFormer's asymmetric mode.

Keys follow timm/MAE (``qkv``, ``proj``) so official checkpoints load by name. The fused
``scaled_dot_product_attention`` kernel runs unless the caller needs the attention map
(candidate elimination); only then is the softmax computed explicitly.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AttentionMode = Literal["full", "asymmetric"]


class Attention(nn.Module):
    """Pre-projected multi-head attention over a [templates | search | extra] token sequence.

    ``asymmetric`` (MixFormer P-MAM): template queries attend only to template keys, so template
    features never depend on the search image; search and extra-token queries attend to all keys.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, mode: AttentionMode = "full") -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        if mode not in ("full", "asymmetric"):
            raise ValueError(f"attention mode must be 'full' or 'asymmetric', got {mode!r}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.mode: AttentionMode = mode
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, num_template: int, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """Return (output (B, N, C), softmaxed attention (B, heads, N, N) or None)."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if need_weights:
            out, attn = self._explicit(q, k, v, num_template)
        else:
            out, attn = self._fused(q, k, v, num_template), None
        return self.proj(out.transpose(1, 2).reshape(b, n, c)), attn

    def _fused(self, q: Tensor, k: Tensor, v: Tensor, num_template: int) -> Tensor:
        if self.mode == "full":
            return F.scaled_dot_product_attention(q, k, v)
        t = num_template
        out_template = F.scaled_dot_product_attention(q[:, :, :t], k[:, :, :t], v[:, :, :t])
        out_rest = F.scaled_dot_product_attention(q[:, :, t:], k, v)
        return torch.cat([out_template, out_rest], dim=2)

    def _explicit(self, q: Tensor, k: Tensor, v: Tensor, num_template: int) -> tuple[Tensor, Tensor]:
        logits = (q * self.scale) @ k.transpose(-2, -1)
        if self.mode == "asymmetric":
            n = logits.shape[-1]
            idx = torch.arange(n, device=logits.device)
            blocked = (idx[:, None] < num_template) & (idx[None, :] >= num_template)
            logits = logits.masked_fill(blocked, float("-inf"))
        attn = logits.softmax(dim=-1)
        return attn @ v, attn
