"""OSTrack: one-stream ViT + centre head (spec compresstracker.md §1, fixtures README A.5).

Module names equal the official ones (``backbone.*``, ``box_head.*``), so an official
``OSTrack_ep0300.pth.tar['net']`` loads with no renaming.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from trackers.models.registry import Meta, StateDict, forward_kwargs, register_family, register_official_config
from trackers.nn.candidate_elimination import TemplateRange
from trackers.nn.heads.center import CenterHead
from trackers.nn.vit import OneStreamViT
from trackers.nn.window import hann2d
from trackers.types import TrackerOutput

VIT_B = dict(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0)
OSTRACK_CE_LOC = (3, 6, 9)
OSTRACK_CE_KEEP_RATIO = (0.7, 0.7, 0.7)
CE_BACKBONE_SUFFIX = "_ce"


class OSTrack(nn.Module):
    """Template + search -> joint ViT (optionally with candidate elimination) -> centre head."""

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
    ) -> None:
        super().__init__()
        self.backbone = OneStreamViT(
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            patch_size=patch_size,
            template_size=template_size,
            search_size=search_size,
            pos_embed="learned",
            ce_loc=ce_loc,
            ce_keep_ratio=ce_keep_ratio,
            ce_template_range=ce_template_range,
            final_norm=True,
            unused_timm_params=("cls_token", "pos_embed"),
            drop_path_rate=drop_path_rate,
        )
        self.box_head = CenterHead(embed_dim, head_channels)

    @property
    def feat_size(self) -> int:
        return self.backbone.search_grid[0]

    def ce_template_mask(self, batch_size: int, device: torch.device | None = None) -> Tensor | None:
        """CE template rows for the configured range (CTR_POINT: the fixed centre token, train and test)."""
        return self.backbone.ce_template_mask(batch_size, device)

    def forward(
        self,
        template: Tensor,
        search: Tensor,
        ce_template_mask: Tensor | None = None,
        ce_keep_rate: float | None = None,
        return_features: Iterable[int] = (),
    ) -> TrackerOutput:
        """``ce_keep_rate`` overrides every CE block's ratio (training warm-up); None uses the configured ones."""
        out = self.backbone(template, search, ce_template_mask, ce_keep_rate, return_features=return_features)
        pred = self.head_forward(out.tokens)
        pred.aux["removed_indexes"] = list(out.removed_indexes)
        pred.features = out.features
        return pred

    def head_forward(self, tokens: Tensor) -> TrackerOutput:
        """Centre head on finalised backbone tokens (B, N, C): the last Ns tokens, row-major on the grid."""
        b, _, c = tokens.shape
        h, w = self.backbone.search_grid
        feat = tokens[:, -h * w :].transpose(1, 2).reshape(b, c, h, w)
        score_map, size_map, offset_map = self.box_head(feat)
        boxes = CenterHead.decode(score_map, size_map, offset_map)
        aux = {"score_map": score_map, "size_map": size_map, "offset_map": offset_map, "backbone_feat": tokens}
        return TrackerOutput(boxes=boxes, score=None, aux=aux)

    @classmethod
    def from_official_config(cls, config: Mapping[str, Any], backbone_args: Mapping[str, Any]) -> OSTrack:
        """Build from official config names (a parity fixture's ``config`` / ``backbone_args``)."""
        return cls(**official_center_tracker_args(config, backbone_args))


def official_center_tracker_args(config: Mapping[str, Any], backbone_args: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments shared by OSTrack-style models, read from official config names."""
    head = config.get("MODEL.HEAD.TYPE", "CENTER")
    if head != "CENTER":
        raise ValueError(f"only the CENTER head is implemented, config has MODEL.HEAD.TYPE={head!r}")
    patch = int(backbone_args.get("PATCH_SIZE", 16))
    stride = int(config.get("MODEL.BACKBONE.STRIDE", patch))
    if stride != patch:
        raise ValueError(f"MODEL.BACKBONE.STRIDE {stride} != patch size {patch} is not supported")
    has_ce = str(config.get("MODEL.BACKBONE.TYPE", "")).endswith(CE_BACKBONE_SUFFIX)
    return dict(
        embed_dim=int(backbone_args["EMBED_DIM"]),
        depth=int(backbone_args["DEPTH"]),
        num_heads=int(backbone_args["NUM_HEADS"]),
        mlp_ratio=float(backbone_args.get("MLP_RATIO", 4.0)),
        patch_size=patch,
        template_size=int(config["DATA.TEMPLATE.SIZE"]),
        search_size=int(config["DATA.SEARCH.SIZE"]),
        ce_loc=tuple(config.get("MODEL.BACKBONE.CE_LOC") or ()) if has_ce else (),
        ce_keep_ratio=tuple(config.get("MODEL.BACKBONE.CE_KEEP_RATIO") or ()) if has_ce else (),
        ce_template_range=config.get("MODEL.BACKBONE.CE_TEMPLATE_RANGE", "ALL"),
        head_channels=int(config.get("MODEL.HEAD.NUM_CHANNELS", 256)),
        drop_path_rate=float(backbone_args.get("DROP_PATH_RATE", config.get("TRAIN.DROP_PATH_RATE", 0.1))),
    )


def convert_official_state_dict(state: StateDict) -> StateDict:
    """Official OSTrack keys are the suite's keys."""
    return state


def center_parity_outputs(out: TrackerOutput) -> dict[str, Tensor]:
    """Fixture outputs of a centre-head tracker (fixtures README A.3): forward outputs plus the Hann-windowed box."""
    score_map, size_map, offset_map = out.aux["score_map"], out.aux["size_map"], out.aux["offset_map"]
    window = hann2d(score_map.shape[-2], score_map.shape[-1], score_map.device)
    result = {
        "pred_boxes": out.boxes.unsqueeze(1),
        "score_map": score_map,
        "size_map": size_map,
        "offset_map": offset_map,
        "backbone_feat": out.aux["backbone_feat"],
        "pred_boxes_hann": CenterHead.decode(score_map * window, size_map, offset_map),
    }
    for i, removed in enumerate(out.aux.get("removed_indexes", [])):
        result[f"removed_indexes_s_{i}"] = removed.to(torch.int64)
    return result


def center_tracker_parity(model: nn.Module, meta: Meta, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
    kw = forward_kwargs(meta, inputs)
    out = model(kw["template"], kw["search"], kw.get("ce_template_mask"), kw.get("ce_keep_rate"))
    return center_parity_outputs(out)


def _official(template_size: int, search_size: int, ce: bool) -> OSTrack:
    ce_args = dict(ce_loc=OSTRACK_CE_LOC, ce_keep_ratio=OSTRACK_CE_KEEP_RATIO) if ce else {}
    return OSTrack(**VIT_B, template_size=template_size, search_size=search_size, **ce_args)


register_family(
    "ostrack",
    build=lambda meta: OSTrack.from_official_config(meta["config"], meta["backbone_args"]),
    parity_outputs=center_tracker_parity,
    convert_official=convert_official_state_dict,
)
for _yaml, _sizes, _ce in (
    ("vitb_256_mae_ce_32x4_ep300", (128, 256), True),
    ("vitb_384_mae_ce_32x4_ep300", (192, 384), True),
    ("vitb_256_mae_32x4_ep300", (128, 256), False),
    ("vitb_256_mae_ce_32x4_got10k_ep100", (128, 256), True),
    ("vitb_384_mae_ce_32x4_got10k_ep100", (192, 384), True),
):
    register_official_config(
        f"experiments/ostrack/{_yaml}.yaml", "ostrack", lambda s=_sizes, c=_ce: _official(s[0], s[1], c)
    )
