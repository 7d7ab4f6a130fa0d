"""OSTrack: one-stream ViT + centre head (spec compresstracker.md §1, fixtures README A.5).

Module names equal the official ones (``backbone.*``, ``box_head.*``), so an official
``OSTrack_ep0300.pth.tar['net']`` loads with no renaming (hence no converter of its own; the
CompressTracker students, which are OSTracks, register theirs in ``compresstracker.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from trackers.models.interface import BlockDrivenNetwork, head_input_check
from trackers.nn.candidate_elimination import TemplateRange
from trackers.nn.heads.center import CenterHead
from trackers.nn.vit import OneStreamViT, TokenState
from trackers.types import TrackerOutput

OSTRACK_TIMM_LEFTOVERS = ("cls_token", "pos_embed")
"""Dead timm parameters the official OSTrack checkpoints hold (loaded strictly, never used)."""


def ostrack_backbone(**vit_args: Any) -> OneStreamViT:
    """The OSTrack configuration of the shared backbone: learned tables, full attention, final norm.

    ``vit_args`` are ``OneStreamViT`` arguments (sizes, ``ce_*``, ``drop_path_rate``, and
    ``num_extra_tokens`` for appended learned tokens such as DyTrack's IoU token, stored under the
    checkpoint names ``reg_tokens`` / ``pos_embed_reg``), forwarded as timm's variants forward theirs.
    """
    return OneStreamViT(pos_embed="learned", final_norm=True, unused_timm_params=OSTRACK_TIMM_LEFTOVERS, **vit_args)


class OSTrack(BlockDrivenNetwork):
    """Template + search -> joint ViT (optionally with candidate elimination) -> centre head.

    The backbone arguments are spelled out (not ``**kwargs``) because the experiment YAMLs set them
    by name under ``network.init_args`` and each family has its own defaults. Initialisation as the
    official constructors (OSTrack and the CompressTracker student): timm's ViT init (Linear trunc_normal
    0.02, zero bias) and Xavier-uniform on the head's conv weights (compresstracker.md §1.4).
    """

    def __init__(
        self,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float | Sequence[float] = 4.0,
        patch_size: int = 16,
        template_size: int = 128,
        search_size: int = 256,
        ce_loc: Sequence[int] = (),
        ce_keep_ratio: Sequence[float] = (),
        ce_template_range: TemplateRange = "CTR_POINT",
        head_channels: int = 256,
        drop_path_rate: float | Sequence[float] = 0.1,
        num_extra_tokens: int = 0,
    ) -> None:
        super().__init__()
        self.backbone = ostrack_backbone(
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            patch_size=patch_size,
            template_size=template_size,
            search_size=search_size,
            ce_loc=ce_loc,
            ce_keep_ratio=ce_keep_ratio,
            ce_template_range=ce_template_range,
            drop_path_rate=drop_path_rate,
            num_extra_tokens=num_extra_tokens,
        )
        self.box_head = CenterHead(embed_dim, head_channels)

    def ce_template_mask(self, batch_size: int, device: torch.device | None = None) -> Tensor | None:
        """CE template rows for the configured range (CTR_POINT: the fixed centre token, train and test)."""
        return self.backbone.ce_template_mask(batch_size, device)

    def embed(
        self,
        template: Tensor,
        search: Tensor,
        ce_template_mask: Tensor | None = None,
        ce_keep_rate: float | None = None,
    ) -> TokenState:
        """``ce_keep_rate`` overrides every CE block's ratio (training warm-up); None uses the configured ones."""
        return self.backbone.embed(template, search, ce_template_mask, ce_keep_rate)

    def forward(
        self,
        template: Tensor,
        search: Tensor,
        ce_template_mask: Tensor | None = None,
        ce_keep_rate: float | None = None,
        return_features: Iterable[int] = (),
    ) -> TrackerOutput:
        """``ce_keep_rate`` overrides every CE block's ratio (training warm-up); None uses the configured ones."""
        state = self.embed(template, search, ce_template_mask, ce_keep_rate)
        return self.forward_state(state, return_features=return_features)

    def head(self, state: TokenState, stem_residual: Mapping[str, Tensor] | None = None) -> TrackerOutput:
        """Centre head on the finalized state's search map (extra tokens are not read).

        ``stem_residual``: per-branch maps added after the head's stem (cascade recycling).
        aux: score/size/offset maps, ``backbone_feat`` (the whole final sequence), ``removed_indexes``.
        """
        head_input_check(state, "OSTrack.head")
        score_map, size_map, offset_map = self.box_head(state.search_map(), stem_residual)
        boxes = CenterHead.decode(score_map, size_map, offset_map)
        aux = {
            "score_map": score_map,
            "size_map": size_map,
            "offset_map": offset_map,
            "backbone_feat": state.tokens,
            "removed_indexes": list(state.removed_indexes),
        }
        return TrackerOutput(boxes=boxes, score=None, aux=aux)
