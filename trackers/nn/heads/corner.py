"""STARK/MixViT corner heads: top-left and bottom-right score maps, soft-argmax to a box.

Spec mixformerv2.md §2.2-2.4. Key names are the official ones (``conv{1..5}_{tl,br}``,
``adjust{1..4}_{tl,br}``) so MixViT checkpoints load with an identity conversion.

- ``CornerHead`` (HEAD_TYPE "CORNER"): four conv units C -> ch -> ch/2 -> ch/4 -> ch/8 and a 1x1
  conv at backbone resolution (stride 16).
- ``PyramidCornerHead`` (HEAD_TYPE "CORNER_UP"): the same trunk with nearest x2/x4 upsampling and
  adjust paths from the backbone map, scoring at stride 4.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trackers.nn.box_ops import xyxy_to_cxcywh
from trackers.nn.heads.layers import conv_bn_relu
from trackers.nn.heads.soft_argmax import bin_positions, soft_argmax_2d

CORNERS = ("tl", "br")
NUM_TRUNK_UNITS = 4
PLAIN_STRIDE = 16
PYRAMID_STRIDE = 4
CornerHeadType = Literal["CORNER", "CORNER_UP"]


def _trunk_widths(in_channels: int, channels: int) -> list[int]:
    """C, ch, ch/2, ch/4, ch/8: the widths of the four conv units."""
    return [in_channels] + [channels // 2**i for i in range(NUM_TRUNK_UNITS)]


class _CornerHeadBase(nn.Module, ABC):
    """Per corner the conv trunk ``conv1..conv4`` (Conv+BN+ReLU) and ``conv5`` (1x1 -> 1 channel);
    subclasses wire it into a score map. Decode: soft-argmax of both maps -> cxcywh box."""

    stride: int

    def __init__(self, in_channels: int, channels: int, feat_size: int) -> None:
        super().__init__()
        self.feat_size = feat_size
        self.widths = _trunk_widths(in_channels, channels)
        for corner in CORNERS:
            for i in range(NUM_TRUNK_UNITS):
                self.add_module(f"conv{i + 1}_{corner}", conv_bn_relu(self.widths[i], self.widths[i + 1]))
            self.add_module(f"conv{NUM_TRUNK_UNITS + 1}_{corner}", nn.Conv2d(self.widths[-1], 1, kernel_size=1))

    @abstractmethod
    def score_map(self, x: Tensor, corner: str) -> Tensor:
        """(B, 1, F, F) scores of ``corner`` ('tl' or 'br') on the (B, C, H, W) search map."""

    def forward(self, x: Tensor, softmax: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
        """x: (B, C, H, W) search map. Returns (box (B, 4) crop cxcywh, {prob_tl, prob_br} (B, F*F)).

        The box always comes from the softmax; ``softmax=False`` only makes ``prob_*`` the raw scores.
        """
        corners, dists = [], {}
        for corner in CORNERS:
            scores = self.score_map(x, corner)
            if scores.shape[-1] != self.feat_size:
                raise ValueError(
                    f"score map is {scores.shape[-1]} wide but the head was built for "
                    f"feat_size={self.feat_size}; build it with search_size // {self.stride} of the input crop"
                )
            xy, probs = soft_argmax_2d(scores, bin_positions(self.feat_size, self.stride, scores.device))
            corners.append(xy)
            dists[f"prob_{corner}"] = probs if softmax else scores.flatten(1)
        box = xyxy_to_cxcywh(torch.cat(corners, dim=1))  # (x_tl, y_tl, x_br, y_br)
        return box, dists


class CornerHead(_CornerHeadBase):
    """Plain corner head (stride 16): the trunk in sequence at backbone resolution."""

    stride = PLAIN_STRIDE

    def __init__(self, in_channels: int = 768, channels: int = 384, feat_size: int = 18) -> None:
        super().__init__(in_channels, channels, feat_size)

    def score_map(self, x: Tensor, corner: str) -> Tensor:
        for i in range(1, NUM_TRUNK_UNITS + 2):
            x = getattr(self, f"conv{i}_{corner}")(x)
        return x


class PyramidCornerHead(_CornerHeadBase):
    """Pyramidal corner head (stride 4, MixViT teacher): nearest upsampling with adjust skips.

    Per corner, with x the (B, C, G, G) map: x2 = conv2(conv1(x)); u1 = up2(adjust1(x)) + up2(x2);
    x3 = conv3(u1); u2 = up4(adjust2(x)) + up2(x3); score = conv5(conv4(u2)) + up4(adjust3(x2))
    + up2(adjust4(x3)). The adjust3/adjust4 paths end in Conv+BN+ReLU (so they are >= 0).
    """

    stride = PYRAMID_STRIDE

    def __init__(self, in_channels: int = 768, channels: int = 384, feat_size: int = 72) -> None:
        super().__init__(in_channels, channels, feat_size)
        w = self.widths
        for corner in CORNERS:
            self.add_module(f"adjust1_{corner}", conv_bn_relu(in_channels, w[2]))
            self.add_module(f"adjust2_{corner}", conv_bn_relu(in_channels, w[3]))
            self.add_module(f"adjust3_{corner}", _conv_chain(w[2], w[3], w[4], 1))
            self.add_module(f"adjust4_{corner}", _conv_chain(w[3], w[4], 1))

    def score_map(self, x: Tensor, corner: str) -> Tensor:
        m = {name: getattr(self, f"{name}_{corner}") for name in _PYRAMID_MODULES}
        x2 = m["conv2"](m["conv1"](x))
        x3 = m["conv3"](_up(m["adjust1"](x), 2) + _up(x2, 2))
        x4 = m["conv4"](_up(m["adjust2"](x), 4) + _up(x3, 2))
        return m["conv5"](x4) + _up(m["adjust3"](x2), 4) + _up(m["adjust4"](x3), 2)


_PYRAMID_MODULES = ("conv1", "conv2", "conv3", "conv4", "conv5", "adjust1", "adjust2", "adjust3", "adjust4")


def _conv_chain(*widths: int) -> nn.Sequential:
    """Conv+BN+ReLU units through ``widths`` (keys ``<i>.0`` conv, ``<i>.1`` BN)."""
    return nn.Sequential(*(conv_bn_relu(a, b) for a, b in zip(widths[:-1], widths[1:])))


def _up(x: Tensor, factor: int) -> Tensor:
    """The official ``F.interpolate(x, scale_factor=k)``: default nearest mode."""
    return F.interpolate(x, scale_factor=factor)


def corner_head_stride(head_type: CornerHeadType) -> int:
    """Score-map stride in input pixels of a HEAD_TYPE."""
    return {"CORNER": PLAIN_STRIDE, "CORNER_UP": PYRAMID_STRIDE}[head_type]


def build_corner_head(head_type: CornerHeadType, in_channels: int, channels: int, search_size: int) -> _CornerHeadBase:
    """Official HEAD_TYPE -> head; F = search_size // stride."""
    if head_type not in ("CORNER", "CORNER_UP"):
        raise ValueError(
            f"corner head type must be 'CORNER' or 'CORNER_UP', got {head_type!r}"
        )
    cls = CornerHead if head_type == "CORNER" else PyramidCornerHead
    return cls(in_channels, channels, search_size // corner_head_stride(head_type))


def corner_marginals(prob_tl: Tensor, prob_br: Tensor) -> dict[str, Tensor]:
    """1-D side distributions of the corner maps (stage-1 teacher targets, spec §3).

    The (B, F*F) maps are (row = y, col = x): left/top are the column/row marginals of the top-left
    map, right/bottom those of the bottom-right map.
    """
    f = int(round(prob_tl.shape[-1] ** 0.5))
    tl, br = prob_tl.view(-1, f, f), prob_br.view(-1, f, f)
    return {"prob_l": tl.sum(dim=1), "prob_t": tl.sum(dim=2), "prob_r": br.sum(dim=1), "prob_b": br.sum(dim=2)}
