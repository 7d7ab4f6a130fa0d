"""OSTrack centre head (CenterPredictor): score, size and offset maps on the search grid.

Spec compresstracker.md §1.4. Each branch is four Conv3x3+BN+ReLU layers with widths
C -> ch -> ch/2 -> ch/4 -> ch/8, then a 1x1 conv. Key names follow the official module
(``conv{1..4}_{ctr,offset,size}.{0,1}``, ``conv5_*``) so checkpoints load by name.

The first Conv+BN+ReLU of each branch is its *stem*. ``stem`` / ``from_stems`` expose the split,
and ``forward(feat, stem_residual)`` adds a per-branch map after the stem: DyTrack's cascade
recycling (dytrack.md §4: ``F_k = Stem_k(X_k) + R_k(G_{k-1})``) without a copy of the head.
"""

from __future__ import annotations

import torch
from collections.abc import Mapping

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

    def stem(self, feat: Tensor) -> dict[str, Tensor]:
        """Each branch's first Conv+BN+ReLU on the (B, C, F, F) feature: {'ctr'|'offset'|'size': (B, ch, F, F)}."""
        return {name: getattr(self, f"conv1_{name}")(feat) for name in BRANCHES}

    def from_stems(self, stems: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """The rest of every branch on its stem output; returns the maps of ``forward``."""
        raw = {}
        for name in BRANCHES:
            x = stems[name]
            for i in range(2, NUM_CONV_LAYERS + 2):
                x = getattr(self, f"conv{i}_{name}")(x)
            raw[name] = x
        score = raw["ctr"].sigmoid().clamp(SIGMOID_CLAMP, 1 - SIGMOID_CLAMP)
        size = raw["size"].sigmoid().clamp(SIGMOID_CLAMP, 1 - SIGMOID_CLAMP)
        return score, size, raw["offset"]

    def forward(self, feat: Tensor, stem_residual: Mapping[str, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Return (score_map (B,1,F,F), size_map (B,2,F,F) as (w, h), offset_map (B,2,F,F) as (dx, dy)).

        ``stem_residual``: maps added to the named branches' stem outputs (missing branches: nothing added).
        """
        stems = self.stem(feat)
        if stem_residual:
            unknown = set(stem_residual) - set(BRANCHES)
            if unknown:
                raise ValueError(f"stem_residual names unknown branches {sorted(unknown)}; use {sorted(BRANCHES)}")
            stems = {name: x + stem_residual[name] if name in stem_residual else x for name, x in stems.items()}
        return self.from_stems(stems)

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
