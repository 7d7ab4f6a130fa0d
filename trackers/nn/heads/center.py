"""OSTrack centre head (CenterPredictor): score, size and offset maps on the search grid.

Spec compresstracker.md §1.4. Each branch is four Conv3x3+BN+ReLU layers with widths
C -> ch -> ch/2 -> ch/4 -> ch/8, then a 1x1 conv. Key names follow the official module
(``conv{1..4}_{ctr,offset,size}.{0,1}``, ``conv5_*``) so checkpoints load by name.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trackers.nn.heads.layers import conv_bn_relu

SIGMOID_CLAMP = 1e-4
"""Official ``_sigmoid``: score and size maps are clamped to [1e-4, 1 - 1e-4]."""
BRANCHES = {"ctr": 1, "offset": 2, "size": 2}
NUM_CONV_LAYERS = 4


class CenterHead(nn.Module):
    """Three parallel conv branches over a (B, C, F, F) search feature map."""

    def __init__(self, in_channels: int = 768, channels: int = 256) -> None:
        super().__init__()
        widths = [in_channels] + [channels // 2**i for i in range(NUM_CONV_LAYERS)]
        for name, out in BRANCHES.items():
            for i in range(NUM_CONV_LAYERS):
                self.add_module(f"conv{i + 1}_{name}", conv_bn_relu(widths[i], widths[i + 1]))
            self.add_module(f"conv{NUM_CONV_LAYERS + 1}_{name}", nn.Conv2d(widths[-1], out, kernel_size=1))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def _branch(self, name: str, x: Tensor) -> Tensor:
        for i in range(1, NUM_CONV_LAYERS + 2):
            x = getattr(self, f"conv{i}_{name}")(x)
        return x

    def forward(self, feat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return (score_map (B,1,F,F), size_map (B,2,F,F) as (w, h), offset_map (B,2,F,F) as (dx, dy))."""
        score = self._branch("ctr", feat).sigmoid().clamp(SIGMOID_CLAMP, 1 - SIGMOID_CLAMP)
        size = self._branch("size", feat).sigmoid().clamp(SIGMOID_CLAMP, 1 - SIGMOID_CLAMP)
        offset = self._branch("offset", feat)
        return score, size, offset

    @staticmethod
    def decode(score_map: Tensor, size_map: Tensor, offset_map: Tensor) -> Tensor:
        """Box (B, 4) normalised crop cxcywh at the score-map argmax (official ``cal_bbox``).

        The same rule serves training (raw map) and tracking (Hann-windowed map passed in).
        """
        b, _, h, w = score_map.shape
        idx = score_map.flatten(1).argmax(dim=1)
        iy, ix = idx.div(w, rounding_mode="floor"), idx % w
        gather = idx.view(b, 1, 1).expand(b, 2, 1)
        size = size_map.flatten(2).gather(2, gather).squeeze(-1)
        offset = offset_map.flatten(2).gather(2, gather).squeeze(-1)
        cx = (ix.to(offset.dtype) + offset[:, 0]) / w
        cy = (iy.to(offset.dtype) + offset[:, 1]) / h
        return torch.stack([cx, cy, size[:, 0], size[:, 1]], dim=1)
