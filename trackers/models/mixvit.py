"""MixViT (MixFormer's ViT tracker): the dense corner-head teacher of MixFormerV2 stage 1.

Spec mixformerv2.md §2 and §8.4, fixtures README A.5. The backbone is the shared
``OneStreamViT`` in MixFormer mode (asymmetric mixed attention over [template | online template |
search], fixed sin-cos tables ``pos_embed_t``/``pos_embed_s``, no final norm). Module names equal
the official ones, so ``mixformer_vit_base_online.pth.tar['net']`` loads after dropping its SPM
and adding the BatchNorm counters its FrozenBN lacked (``convert_official_state_dict``).

This file also holds what MixFormerV2 shares with MixViT: the backbone factory, the official
VIT_TYPE sizes and the template stacking.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from trackers.models.registry import Meta, StateDict, forward_kwargs, register_family, register_official_config
from trackers.nn.heads.corner import CornerHeadType, build_corner_head
from trackers.nn.vit import GammaMode, OneStreamViT
from trackers.types import TrackerOutput

NUM_TEMPLATES = 2
"""Static + online template: the official attention split hard-codes exactly two."""
VIT_TYPES: dict[str, dict[str, Any]] = {
    "base_patch16": dict(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0),
    "large_patch16": dict(embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0),
}
DEFAULT_HEAD_DIM = 384
"""``MODEL.HEAD_DIM`` is read with getattr and this default by the official builder."""
DEFAULT_DROP_PATH_RATE = 0.1
TIMM_LEFTOVERS = ("cls_token", "pos_embed", "norm", "head")
SPM_PREFIX = "score_branch."
BN_COUNTER = "num_batches_tracked"
BN_STAT = "running_mean"


def mixformer_backbone(
    *,
    embed_dim: int,
    depth: int,
    num_heads: int,
    mlp_ratio: float | Sequence[float],
    patch_size: int,
    template_size: int,
    search_size: int,
    num_extra_tokens: int = 0,
    unused_timm_params: Iterable[str] = (),
    drop_path_rate: float | Sequence[float] = DEFAULT_DROP_PATH_RATE,
    norm_eps: float = 1e-6,
    gamma_mode: GammaMode = "branch",
) -> OneStreamViT:
    """The MixFormer configuration of the shared backbone (MixViT and MixFormerV2)."""
    return OneStreamViT(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        patch_size=patch_size,
        template_size=template_size,
        search_size=search_size,
        num_templates=NUM_TEMPLATES,
        pos_embed="sincos",
        num_extra_tokens=num_extra_tokens,
        attn_mode="asymmetric",
        final_norm=False,
        unused_timm_params=unused_timm_params,
        drop_path_rate=drop_path_rate,
        norm_eps=norm_eps,
        gamma_mode=gamma_mode,
    )


def stack_templates(template: Tensor, online_template: Tensor | None) -> Tensor:
    """(B, 3, H, W) static + online -> (B, 2, 3, H, W); a (B, 2, 3, H, W) ``template`` passes through.

    The official loader's leading singleton dimension ((1, B, 3, H, W)) is squeezed.
    """
    if online_template is None:
        if template.dim() != 5 or template.shape[1] != NUM_TEMPLATES:
            raise ValueError(
                f"without online_template, template must be (B, {NUM_TEMPLATES}, 3, H, W); "
                f"got {tuple(template.shape)}"
            )
        return template
    if template.dim() == 5:
        template, online_template = template.squeeze(0), online_template.squeeze(0)
    return torch.stack([template, online_template], dim=1)


def official_vit_args(config: Mapping[str, Any], backbone_args: Mapping[str, Any] | None) -> dict[str, Any]:
    """ViT sizes of an official config: VIT_TYPE defaults, overridden by explicit ``backbone_args``."""
    vit_type = config.get("MODEL.VIT_TYPE", "base_patch16")
    if vit_type not in VIT_TYPES:
        raise ValueError(f"MODEL.VIT_TYPE {vit_type!r} unknown; use one of {sorted(VIT_TYPES)}")
    args = dict(VIT_TYPES[vit_type], patch_size=16, drop_path_rate=DEFAULT_DROP_PATH_RATE, norm_eps=1e-6)
    names = dict(
        EMBED_DIM="embed_dim", DEPTH="depth", NUM_HEADS="num_heads", MLP_RATIO="mlp_ratio",
        PATCH_SIZE="patch_size", DROP_PATH_RATE="drop_path_rate", LAYER_NORM_EPS="norm_eps",
    )  # fmt: skip
    for official, ours in names.items():
        if backbone_args and official in backbone_args:
            args[ours] = backbone_args[official]
    args["template_size"] = int(config.get("DATA.TEMPLATE.SIZE", 128))
    args["search_size"] = int(config.get("DATA.SEARCH.SIZE", 288))
    return args


def search_map(tokens: Tensor, backbone: OneStreamViT) -> Tensor:
    """Search tokens of a [templates | search | extra] sequence as a (B, C, H, W) map (row-major)."""
    b, _, c = tokens.shape
    h, w = backbone.search_grid
    start = backbone.num_templates * backbone.num_template_tokens
    return tokens[:, start : start + h * w].transpose(1, 2).reshape(b, c, h, w)


class MixViT(nn.Module):
    """MixFormer ViT + corner head ('CORNER' stride 16, or the pyramidal 'CORNER_UP' stride 4).

    The dead timm parameters (``cls_token``, ``pos_embed``, ``norm``, ``head``) are kept so the
    official checkpoints load strictly.
    """

    def __init__(
        self,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float | Sequence[float] = 4.0,
        patch_size: int = 16,
        template_size: int = 128,
        search_size: int = 288,
        head_type: CornerHeadType = "CORNER_UP",
        head_channels: int = DEFAULT_HEAD_DIM,
        drop_path_rate: float | Sequence[float] = DEFAULT_DROP_PATH_RATE,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.backbone = mixformer_backbone(
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            patch_size=patch_size,
            template_size=template_size,
            search_size=search_size,
            unused_timm_params=TIMM_LEFTOVERS,
            drop_path_rate=drop_path_rate,
            norm_eps=norm_eps,
        )
        self.box_head = build_corner_head(head_type, embed_dim, head_channels, search_size)

    @property
    def feat_size(self) -> int:
        """Side F of the corner maps."""
        return self.box_head.feat_size

    def forward(
        self,
        template: Tensor,
        online_template: Tensor | None,
        search: Tensor,
        softmax: bool = True,
        return_features: Iterable[int] = (),
    ) -> TrackerOutput:
        """aux: ``prob_tl``/``prob_br`` (B, F*F) (probabilities, or raw scores if not ``softmax``),
        ``backbone_feat`` (B, N, C); features: tokens after the blocks in ``return_features``."""
        out = self.backbone(stack_templates(template, online_template), search, return_features=return_features)
        pred = self.head_forward(out.tokens, softmax)
        pred.features = out.features
        return pred

    def head_forward(self, tokens: Tensor, softmax: bool = True) -> TrackerOutput:
        """Corner head on the backbone's output sequence (B, N, C)."""
        boxes, dists = self.box_head(search_map(tokens, self.backbone), softmax)
        return TrackerOutput(boxes=boxes, score=None, aux={**dists, "backbone_feat": tokens})

    @classmethod
    def from_official_config(cls, config: Mapping[str, Any], backbone_args: Mapping[str, Any] | None = None) -> MixViT:
        """Build from official config names (``MODEL.VIT_TYPE``, ``MODEL.HEAD_TYPE``, ``MODEL.HEAD_DIM``,
        ``DATA.*.SIZE``); ``backbone_args`` (fixture meta) override the VIT_TYPE sizes."""
        vit = official_vit_args(config, backbone_args)
        hidden = int(config.get("MODEL.HIDDEN_DIM", vit["embed_dim"]))
        if hidden != vit["embed_dim"]:
            raise ValueError(
                f"MODEL.HIDDEN_DIM {hidden} must equal the ViT width {vit['embed_dim']} "
                f"(it is the corner head's input width)"
            )
        return cls(
            **vit,
            head_type=config.get("MODEL.HEAD_TYPE", "CORNER_UP"),
            head_channels=int(config.get("MODEL.HEAD_DIM", DEFAULT_HEAD_DIM)),
        )


def convert_official_state_dict(state: StateDict) -> StateDict:
    """Official MixViT checkpoint -> suite names (idempotent).

    Names are identical. The released MixFormer-repo checkpoint additionally holds the SPM score
    branch (``score_branch.*``, unused by the teacher) and FrozenBN buffers without
    ``num_batches_tracked``; the SPM is dropped and zero counters are added (they do not affect eval).
    """
    out = {k: v for k, v in state.items() if not k.startswith(SPM_PREFIX)}
    for key in [k for k in out if k.endswith(f".{BN_STAT}")]:
        counter = key[: -len(BN_STAT)] + BN_COUNTER
        out.setdefault(counter, torch.zeros((), dtype=torch.long))
    return out


def to_official_state_dict(state: StateDict, frozen_bn: bool = False) -> StateDict:
    """Suite -> official names; ``frozen_bn`` drops the BN counters (MixFormer online / FrozenBN layout)."""
    return {k: v for k, v in state.items() if not (frozen_bn and k.endswith(f".{BN_COUNTER}"))}


def _parity_outputs(model: nn.Module, meta: Meta, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
    kw = forward_kwargs(meta, inputs)
    out = model(kw["template"], kw["online_template"], kw["search"], softmax=kw.get("softmax", True))
    return {"pred_boxes": out.boxes.unsqueeze(1), "prob_tl": out.aux["prob_tl"], "prob_br": out.aux["prob_br"]}


register_family(
    "mixvit",
    build=lambda meta: MixViT.from_official_config(meta["config"], meta.get("backbone_args")),
    parity_outputs=_parity_outputs,
    convert_official=convert_official_state_dict,
)
register_official_config(
    "experiments/mixformer_vit/teacher_mixvit_b.yaml",
    "mixvit",
    lambda: MixViT(template_size=128, search_size=288, head_type="CORNER_UP"),
)
