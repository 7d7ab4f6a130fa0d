"""MixFormerV2: four prediction tokens on a MixFormer ViT, read by a shared per-side bin head.

Spec mixformerv2.md §1, §7, §8. The token sequence is [template | online template | search |
4 prediction tokens (l, r, t, b)]; template queries see only templates (asymmetric attention), so
the templates can be encoded once per template update (``prepare_templates``) and each frame runs
only the search and prediction tokens (``forward_with_cache``), exactly.

Module names equal the official ones (``backbone.*``, ``box_head.layers.*``, ``score_head.layers.*``):
the released ``mixformerv2_base.pth.tar`` / ``mixformerv2_small.pth.tar`` load with no renaming.
Checkpoint surgery of the distillation chain (block pruning, MLP reduction, new input size) lives
here too, as state-dict functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from trackers.models.mixvit import mixformer_backbone, official_vit_args, stack_templates
from trackers.models.registry import Meta, StateDict, forward_kwargs, register_family, register_official_config
from trackers.nn.heads.distribution import SIDES, DistributionHead
from trackers.nn.heads.score import ScoreHead, ScoreReduction
from trackers.nn.template_cache import TemplateCache, encode_templates, run_blocks_with_cache
from trackers.nn.vit import Gamma, GammaMode
from trackers.types import TrackerOutput

NUM_PREDICTION_TOKENS = len(SIDES)
RELEASED_NUM_BINS = 96
"""Bins of the released B and S checkpoints (distilled from MixViT-L at 384, spec §1.7)."""
REPO_NUM_BINS = 72
"""Bins of models trained by the repository yamls (MixViT-B teacher at 288, stride 4)."""
BLOCK_KEY = re.compile(r"^(backbone\.blocks\.)(\d+)(\..*)$")
POSITION_TABLES = ("pos_embed_t", "pos_embed_s")


class MixFormerV2(nn.Module):
    """MixFormerV2 network (B: 8 blocks, 288/128; S: 4 blocks, MLP ratio 1, 224/112).

    Args:
        num_bins: bins per side F (96 for the released checkpoints, 72 for repo-trained models).
        head_hidden_dim: width of both heads' hidden layer (official HIDDEN_DIM = ViT width).
        score_head: build the confidence head (online variant); forward runs it on request.
        score_reduction: 'mlp_then_mean' (official code) or 'mean_then_mlp' (paper).
        gamma_mode: how a depth-pruning residual scale enters a block ('branch' = official code).
    """

    def __init__(
        self,
        embed_dim: int = 768,
        depth: int = 8,
        num_heads: int = 12,
        mlp_ratio: float | Sequence[float] = 4.0,
        patch_size: int = 16,
        template_size: int = 128,
        search_size: int = 288,
        num_bins: int = RELEASED_NUM_BINS,
        head_hidden_dim: int | None = None,
        score_head: bool = True,
        score_reduction: ScoreReduction = "mlp_then_mean",
        drop_path_rate: float | Sequence[float] = 0.1,
        norm_eps: float = 1e-6,
        gamma_mode: GammaMode = "branch",
    ) -> None:
        super().__init__()
        hidden = embed_dim if head_hidden_dim is None else head_hidden_dim
        self.backbone = mixformer_backbone(
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            patch_size=patch_size,
            template_size=template_size,
            search_size=search_size,
            num_extra_tokens=NUM_PREDICTION_TOKENS,
            drop_path_rate=drop_path_rate,
            norm_eps=norm_eps,
            gamma_mode=gamma_mode,
        )
        self.box_head = DistributionHead(embed_dim, hidden, num_bins, search_size)
        if score_head:
            self.score_head = ScoreHead(embed_dim, hidden, score_reduction)

    @property
    def has_score_head(self) -> bool:
        return hasattr(self, "score_head")

    @property
    def num_bins(self) -> int:
        return self.box_head.num_bins

    def forward(
        self,
        template: Tensor,
        online_template: Tensor | None,
        search: Tensor,
        softmax: bool = True,
        run_score_head: bool = False,
        return_features: Iterable[int] = (),
        gamma: Gamma = None,
    ) -> TrackerOutput:
        """Full forward on (B, 3, Ht, Wt) template and online template and (B, 3, Hs, Ws) search.

        ``softmax=False`` returns raw bin logits in ``prob_*`` (distillation); the box always comes
        from the softmax. ``gamma``: per-block residual scales (progressive depth pruning).
        aux: prob_l/t/r/b (B, F), reg_tokens (B, 4, C), backbone_feat (B, N, C);
        features: {block: (B, N, C)} after the blocks in ``return_features``.
        """
        out = self.backbone(
            stack_templates(template, online_template), search, gamma=gamma, return_features=return_features
        )
        pred = self.head_forward(out.tokens, softmax, run_score_head)
        pred.features = out.features
        return pred

    def head_forward(self, tokens: Tensor, softmax: bool = True, run_score_head: bool = False) -> TrackerOutput:
        """Heads on the final sequence (B, N, C); the prediction tokens are its last 4 (no final norm)."""
        reg_tokens = tokens[:, -NUM_PREDICTION_TOKENS:]
        boxes, dists = self.box_head(reg_tokens, softmax)
        score = None
        if run_score_head:
            if not self.has_score_head:
                raise ValueError(
                    "run_score_head=True but the model was built with score_head=False"
                )
            score = self.score_head(reg_tokens)
        return TrackerOutput(boxes=boxes, score=score, aux={**dists, "reg_tokens": reg_tokens, "backbone_feat": tokens})

    # ------------------------------------------------------------------ fast exact inference

    def prepare_templates(self, template: Tensor, online_template: Tensor | None) -> TemplateCache:
        """Encode both templates through every block once (call again when the online template changes)."""
        tokens = self.backbone.embed_templates(stack_templates(template, online_template))
        return encode_templates(self.backbone.blocks, tokens)

    def forward_with_cache(
        self,
        cache: TemplateCache,
        search: Tensor,
        softmax: bool = True,
        run_score_head: bool = False,
        return_features: Iterable[int] = (),
    ) -> TrackerOutput:
        """Per-frame forward: search + prediction tokens attend to the cached template keys/values.

        Equals ``forward`` with the cached templates (eval mode). A batch-1 cache serves any batch.
        """
        tokens, features = run_blocks_with_cache(
            self.backbone.blocks, cache, self.backbone.embed_search(search), return_features
        )
        pred = self.head_forward(tokens, softmax, run_score_head)
        pred.features = features
        return pred

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_official_config(
        cls,
        config: Mapping[str, Any],
        backbone_args: Mapping[str, Any] | None = None,
        score_head: bool = True,
        score_reduction: ScoreReduction = "mlp_then_mean",
    ) -> MixFormerV2:
        """Build from official config names (``MODEL.BACKBONE.DEPTH``/``MLP_RATIO``, ``MODEL.FEAT_SZ``,
        ``MODEL.HIDDEN_DIM``, ``DATA.*.SIZE``); ``backbone_args`` (fixture meta) override the ViT sizes.
        ``score_head``: the online builder has one, the stage-1/2 builders do not."""
        cfg_vit = {
            k: config[f"MODEL.BACKBONE.{k}"] for k in ("DEPTH", "MLP_RATIO") if f"MODEL.BACKBONE.{k}" in config
        }
        vit = official_vit_args(config, {**cfg_vit, **(backbone_args or {})})
        head = config.get("MODEL.HEAD_TYPE", "MLP")
        if "MLP" not in head:
            raise ValueError(f"MODEL.HEAD_TYPE must contain 'MLP', got {head!r}")
        return cls(
            **vit,
            num_bins=int(config.get("MODEL.FEAT_SZ", RELEASED_NUM_BINS)),
            head_hidden_dim=int(config.get("MODEL.HIDDEN_DIM", vit["embed_dim"])),
            score_head=score_head,
            score_reduction=score_reduction,
        )


# ---------------------------------------------------------------------------------------------
# Checkpoints: official names are the suite's; the distillation chain's surgery on state dicts.
# ---------------------------------------------------------------------------------------------


def convert_official_state_dict(state: StateDict) -> StateDict:
    """Official MixFormerV2 (stage 1, 2, online) checkpoint -> suite names: identical."""
    return dict(state)


def to_official_state_dict(state: StateDict) -> StateDict:
    return dict(state)


def prune_blocks_state_dict(state: StateDict, removed_blocks: Iterable[int]) -> StateDict:
    """Stage 2b surgery (official ``remove_layers``, spec §4.3): drop ``backbone.blocks.{i}`` for the
    removed i and renumber the survivors 0..d'-1 in order; every other key is kept."""
    removed = set(removed_blocks)
    kept = sorted({int(m.group(2)) for k in state if (m := BLOCK_KEY.match(k))} - removed)
    new_index = {old: new for new, old in enumerate(kept)}
    out: StateDict = {}
    for key, value in state.items():
        m = BLOCK_KEY.match(key)
        if m is None:
            out[key] = value
        elif int(m.group(2)) in new_index:
            out[f"{m.group(1)}{new_index[int(m.group(2))]}{m.group(3)}"] = value
    return out


def reduce_mlp_state_dict(state: StateDict, hidden_features: int) -> StateDict:
    """MLP reduction init (paper §3.2.2, spec §4.6): keep the leading ``hidden_features`` units,
    fc1 rows and bias, fc2 columns (``w' = w[:d1', :d2']``); fc2 bias is unchanged."""
    out = dict(state)
    for key, value in state.items():
        if not BLOCK_KEY.match(key):
            continue
        if key.endswith("mlp.fc1.weight") or key.endswith("mlp.fc1.bias"):
            out[key] = value[:hidden_features].clone()
        elif key.endswith("mlp.fc2.weight"):
            out[key] = value[:, :hidden_features].clone()
    return out


def refresh_position_tables(state: StateDict, model: MixFormerV2) -> StateDict:
    """Replace the fixed sin-cos tables by the model's own (a new input size, e.g. 288 -> 224 for S)."""
    own = model.backbone.state_dict()
    return {**state, **{f"backbone.{name}": own[name] for name in POSITION_TABLES}}


# ---------------------------------------------------------------------------------------------
# Registry: fixtures and full-size official configurations.
# ---------------------------------------------------------------------------------------------


def _build_from_meta(meta: Meta) -> MixFormerV2:
    online = "online" in meta.get("official_builder", "online")
    return MixFormerV2.from_official_config(meta["config"], meta.get("backbone_args"), score_head=online)


def _parity_outputs(model: nn.Module, meta: Meta, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
    kw = forward_kwargs(meta, inputs)
    last = model.backbone.depth - 1
    out = model(
        kw["template"],
        kw["online_template"],
        kw["search"],
        softmax=kw.get("softmax", True),
        run_score_head=kw.get("run_score_head", False),
        return_features=(last,),
    )
    result = {"pred_boxes": out.boxes.unsqueeze(1), "reg_tokens": out.aux["reg_tokens"], "distill_feat_last": out.features[last]}
    result.update({f"prob_{side}": out.aux[f"prob_{side}"] for side in SIDES})
    if out.score is not None:
        result["pred_scores"] = out.score
    return result


register_family(
    "mixformerv2",
    build=_build_from_meta,
    parity_outputs=_parity_outputs,
    convert_official=convert_official_state_dict,
)
_OFFICIAL: dict[str, dict[str, Any]] = {
    "mixformer2_vit_online/288_depth8_score": dict(depth=8, search_size=288, template_size=128),
    "mixformer2_vit_online/224_depth4_mlp1_score": dict(depth=4, mlp_ratio=1.0, search_size=224, template_size=112),
    "mixformer2_vit/student_288_depth12": dict(depth=12, num_bins=REPO_NUM_BINS, score_head=False),
    "mixformer2_vit/teacher_288_depth12": dict(depth=12, num_bins=REPO_NUM_BINS, score_head=False),
    "mixformer2_vit_stu/student_288_depth12to8": dict(depth=12, num_bins=REPO_NUM_BINS, score_head=False),
    "mixformer2_vit_stu/student_288_depth8": dict(depth=8, num_bins=REPO_NUM_BINS, score_head=False),
}
for _name, _args in _OFFICIAL.items():
    register_official_config(f"experiments/{_name}.yaml", "mixformerv2", lambda a=_args: MixFormerV2(**a))
