"""Test-time tracker of the centre-head family (OSTrack, CompressTracker): Hann-windowed score map."""

from __future__ import annotations

import torch
from torch import nn

from trackers.inference.online import CropTracker
from trackers.nn.heads.center import CenterHead
from trackers.nn.window import hann2d


class CenterHeadTracker(CropTracker):
    """Fixed template, no update; the score map is multiplied by a centred Hann window (spec §1.7)."""

    def __init__(self, network: nn.Module, *args, use_window: bool = True, ce_keep_rate: float | None = None,
                 **kwargs) -> None:
        """``ce_keep_rate``: None uses each CE block's configured ratio (the official test path)."""
        super().__init__(network, *args, **kwargs)
        self.use_window = use_window
        self.ce_keep_rate = ce_keep_rate
        self._ce_mask = network.ce_template_mask(1, self.device)  # fixed centre token(s), every frame

    def predict(self, search: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        out = self.network(self.template, search, ce_template_mask=self._ce_mask, ce_keep_rate=self.ce_keep_rate)
        score_map = out.aux["score_map"]
        if self.use_window:
            score_map = score_map * hann2d(*score_map.shape[-2:], device=score_map.device)
        box = CenterHead.decode(score_map, out.aux["size_map"], out.aux["offset_map"])[0]
        return box, None
