"""MixViT (MixFormer's ViT tracker): the dense corner-head teacher of MixFormerV2 stage 1.

Spec mixformerv2.md §2 and §8.4, fixtures README A.5. The backbone is the shared
``OneStreamViT`` in MixFormer mode (asymmetric mixed attention over [template | online template |
search], fixed sin-cos tables ``pos_embed_t``/``pos_embed_s``, no final norm). Module names equal
the official ones, so ``mixformer_vit_base_online.pth.tar['net']`` loads after dropping its SPM
and adding the BatchNorm counters its FrozenBN lacked (``convert_official_state_dict``).

This file also holds what MixFormerV2 shares with MixViT: the backbone factory and the template
stacking.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from trackers.models.interface import BlockDrivenNetwork, head_input_check
from trackers.models.registry import StateDict, register_family
from trackers.nn.heads.corner import CornerHeadType, build_corner_head
from trackers.nn.vit import UNUSED_TIMM_PARAMS, OneStreamViT, TokenState
from trackers.types import TrackerOutput

NUM_TEMPLATES = 2
"""Static + online template: the official attention split hard-codes exactly two."""
DEFAULT_HEAD_DIM = 384
"""``MODEL.HEAD_DIM`` is read with getattr and this default by the official builder."""
DEFAULT_DROP_PATH_RATE = 0.1
SPM_PREFIX = "score_branch."
BN_COUNTER = "num_batches_tracked"
BN_STAT = "running_mean"


def mixformer_backbone(**vit_args: Any) -> OneStreamViT:
    """The MixFormer configuration of the shared backbone (MixViT and MixFormerV2): two templates,
    fixed sin-cos tables, asymmetric attention, no final norm; ``vit_args`` as ``OneStreamViT``."""
    return OneStreamViT(
        num_templates=NUM_TEMPLATES, pos_embed="sincos", attn_mode="asymmetric", final_norm=False, **vit_args
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


class MixViT(BlockDrivenNetwork):
    """MixFormer ViT + corner head ('CORNER' stride 16, or the pyramidal 'CORNER_UP' stride 4).

    The dead timm parameters (``cls_token``, ``pos_embed``, ``norm``, ``head``) are kept so the
    official checkpoints load strictly. Backbone arguments are spelled out for the YAMLs (as OSTrack).
    Initialisation as the official constructor: timm's ViT init on the backbone (Linear trunc_normal
    0.02, zero bias), PyTorch's default on the corner head's convolutions.
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
            unused_timm_params=UNUSED_TIMM_PARAMS,
            drop_path_rate=drop_path_rate,
            norm_eps=norm_eps,
        )
        self.box_head = build_corner_head(head_type, embed_dim, head_channels, search_size)

    @property
    def feat_size(self) -> int:
        """Side F of the corner maps."""
        return self.box_head.feat_size

    def embed(self, template: Tensor, online_template: Tensor | None, search: Tensor) -> TokenState:
        """Static and online template (or one (B, 2, 3, H, W) stack) and the search crop."""
        return self.backbone.embed(stack_templates(template, online_template), search)

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
        state = self.embed(template, online_template, search)
        return self.forward_state(state, return_features=return_features, softmax=softmax)

    def head(self, state: TokenState, softmax: bool = True) -> TrackerOutput:
        """Corner head on the finalized state's search map."""
        head_input_check(state, "MixViT.head")
        boxes, dists = self.box_head(state.search_map(), softmax)
        return TrackerOutput(boxes=boxes, score=None, aux={**dists, "backbone_feat": state.tokens})


def convert_official_state_dict(state: StateDict, model: nn.Module | None = None) -> StateDict:
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


register_family("mixvit", networks=(MixViT,), convert=convert_official_state_dict)
