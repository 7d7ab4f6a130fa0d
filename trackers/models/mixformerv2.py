"""MixFormerV2: four prediction tokens on a MixFormer ViT, read by a shared per-side bin head.

Spec mixformerv2.md §1, §7, §8. The token sequence is [template | online template | search |
4 prediction tokens (l, r, t, b)]; template queries see only templates (asymmetric attention), so
the templates can be encoded once per template update (``prepare_templates``) and each frame runs
only the search and prediction tokens (``forward_with_cache``), exactly.

Module names equal the official ones (``backbone.*``, ``box_head.layers.*``, ``score_head.layers.*``):
the released ``mixformerv2_base.pth.tar`` / ``mixformerv2_small.pth.tar`` load with no renaming.
The family converter (``convert_for_model``) fits a checkpoint of any chain stage to the network
(new input size, score head present or not); block pruning and MLP reduction are in ``surgery.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import Tensor, nn

from trackers.errors import SetupError
from trackers.models.interface import BlockDrivenNetwork, head_input_check
from trackers.models.mixvit import mixformer_backbone, stack_templates
from trackers.models.registry import StateDict, register_family
from trackers.nn.heads.distribution import BINS_WEIGHT_KEY, SIDES, DistributionHead
from trackers.nn.heads.score import ScoreHead, ScoreReduction
from trackers.nn.template_cache import TemplateCache, encode_templates, run_blocks_with_cache
from trackers.nn.vit import Gamma, GammaMode, TokenState, WeightInit
from trackers.types import TrackerOutput

NUM_PREDICTION_TOKENS = len(SIDES)
RELEASED_NUM_BINS = 96
"""Bins of the released B and S checkpoints (distilled from MixViT-L at 384, spec §1.7)."""
REPO_NUM_BINS = 72
"""Bins of models trained by the repository yamls (MixViT-B teacher at 288, stride 4)."""
POSITION_TABLES = ("pos_embed_t", "pos_embed_s")
SCORE_HEAD_PREFIX = "score_head."
BOX_HEAD_ATTRIBUTE = "box_head"
BOX_HEAD_BINS_KEY = f"{BOX_HEAD_ATTRIBUTE}.{BINS_WEIGHT_KEY}"
"""State-dict key whose first dimension is the bins per side."""


class MixFormerV2(BlockDrivenNetwork):
    """MixFormerV2 network (B: 8 blocks, 288/128; S: 4 blocks, MLP ratio 1, 224/112).

    Args:
        num_bins: bins per side F (96 for the released checkpoints, 72 for repo-trained models);
            None: not known yet, the box head is built by ``set_num_bins`` (the distillation method,
            from the teacher's map side) or by the first weights loaded (``load_weights``, a restored
            Lightning checkpoint), so a chain's bins follow its lineage.
        head_hidden_dim: width of both heads' hidden layer (official HIDDEN_DIM = ViT width).
        score_head: build the confidence head (online variant); forward runs it on request.
        score_reduction: 'mlp_then_mean' (official code) or 'mean_then_mlp' (paper).
        gamma_mode: how a depth-pruning residual scale enters a block ('branch' = official code).
        weight_init: the backbone's Linear init; 'torch' (PyTorch's default) as the official backbone,
            which skips timm's constructor (spec §1.1); 'timm' for trunc_normal 0.02.
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
        num_bins: int | None = RELEASED_NUM_BINS,
        head_hidden_dim: int | None = None,
        score_head: bool = True,
        score_reduction: ScoreReduction = "mlp_then_mean",
        drop_path_rate: float | Sequence[float] = 0.1,
        norm_eps: float = 1e-6,
        gamma_mode: GammaMode = "branch",
        weight_init: WeightInit = "torch",
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
            weight_init=weight_init,
        )
        self._box_head_dims = (embed_dim, hidden, search_size)
        self.box_head: DistributionHead | None
        self.register_module(BOX_HEAD_ATTRIBUTE, None)  # its place before the score head: official key order
        if num_bins is not None:
            self.set_num_bins(num_bins)
        if score_head:
            self.score_head = ScoreHead(embed_dim, hidden, score_reduction)

    @property
    def has_score_head(self) -> bool:
        return hasattr(self, "score_head")

    @property
    def num_bins(self) -> int | None:
        """Bins per side; None until the box head is built."""
        return None if self.box_head is None else self.box_head.num_bins

    def set_num_bins(self, num_bins: int) -> None:
        """(Re)build the box head for ``num_bins`` at its initialisation (score head untouched); call
        before weights are loaded and before the optimizer is built (it replaces the head's parameters).

        The new head joins the network as it is: on the backbone's device and dtype, in its train/eval
        mode, and frozen when the backbone is (a frozen teacher, score-head training).
        """
        if num_bins < 1:
            raise SetupError(f"model.init_args.network.init_args.num_bins must be positive, got {num_bins}")
        head = DistributionHead(*self._box_head_dims[:2], num_bins, self._box_head_dims[2])
        reference = next(self.backbone.parameters())
        head.to(device=reference.device, dtype=reference.dtype).train(self.backbone.training)
        head.requires_grad_(any(p.requires_grad for p in self.backbone.parameters()))
        self.box_head = head

    def adopt_num_bins(self, state: StateDict, prefix: str = "") -> None:
        """Unresolved bins take those of ``state``'s box head (keys under ``prefix``); resolved bins stay
        (a disagreeing checkpoint is then refused by strict loading, naming the shapes)."""
        if self.num_bins is None:
            bins = state_num_bins(state, prefix)
            if bins is not None:
                self.set_num_bins(bins)

    def embed(self, template: Tensor, online_template: Tensor | None, search: Tensor) -> TokenState:
        """Static and online template (or one (B, 2, 3, H, W) stack), search, then the 4 prediction tokens."""
        return self.backbone.embed(stack_templates(template, online_template), search)

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
        state = self.embed(template, online_template, search)
        return self.forward_state(
            state, gamma=gamma, return_features=return_features, softmax=softmax, run_score_head=run_score_head
        )

    def head(self, state: TokenState, softmax: bool = True, run_score_head: bool = False) -> TrackerOutput:
        """Heads on the finalized state's prediction tokens (its extra tokens; no final norm)."""
        head_input_check(state, "MixFormerV2.head")
        if self.box_head is None:
            raise SetupError(
                "MixFormerV2 has num_bins: null and nothing has set it yet: give "
                "model.init_args.network.init_args.num_bins, or load weights (a checkpoint / the teacher) first"
            )
        reg_tokens = state.extra_tokens
        boxes, dists = self.box_head(reg_tokens, softmax)
        score = None
        if run_score_head:
            if not self.has_score_head:
                raise ValueError(
                    "run_score_head=True but the model was built with score_head=False"
                )
            score = self.score_head(reg_tokens)
        return TrackerOutput(
            boxes=boxes, score=score, aux={**dists, "reg_tokens": reg_tokens, "backbone_feat": state.tokens}
        )

    # ------------------------------------------------------------------ fast exact inference

    def prepare_templates(self, template: Tensor, online_template: Tensor | None) -> TemplateCache:
        """Encode both templates through every block once (call again when the online template changes)."""
        tokens = self.backbone.embed_templates(stack_templates(template, online_template))
        return encode_templates(self.backbone.blocks, tokens, self.backbone.ce_keep_ratios)

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
        pred = self.head(self.finalize(self.backbone.layout(tokens)), softmax, run_score_head)
        pred.features = features
        return pred


# ---------------------------------------------------------------------------------------------
# Checkpoints: official names are the suite's; the distillation chain's surgery on state dicts.
# ---------------------------------------------------------------------------------------------


def state_num_bins(state: StateDict, prefix: str = "") -> int | None:
    """Bins per side of the MixFormerV2 box head in ``state`` (keys under ``prefix``); None without one."""
    weight = state.get(f"{prefix}{BOX_HEAD_BINS_KEY}")
    return None if weight is None else int(weight.shape[0])


def convert_for_model(state: StateDict, model: nn.Module) -> StateDict:
    """The family converter: a checkpoint of any chain stage (names are the official ones) -> ``model``.

    A model built with ``num_bins: None`` takes the checkpoint's bins here (its head is built before
    the strict load), so a stage initialised from its predecessor needs no bin count in its config.

    The fixed sin-cos tables come from ``model`` when the checkpoint's are for another input size
    (e.g. 288 -> 224 for S); a score head is dropped when ``model`` has none and kept at its init
    when the checkpoint has none (stage 2 -> score-head training). Block pruning and MLP reduction
    are asked for by the caller (``load_weights(prune_blocks=..., reduce_mlp=...)``).
    """
    if not isinstance(model, MixFormerV2):
        return state
    model.adopt_num_bins(state)
    state = refresh_position_tables(state, model)
    has_score = any(k.startswith(SCORE_HEAD_PREFIX) for k in state)
    if model.has_score_head and not has_score:
        state.update(model.score_head.state_dict(prefix=SCORE_HEAD_PREFIX))
    elif not model.has_score_head and has_score:
        state = {k: v for k, v in state.items() if not k.startswith(SCORE_HEAD_PREFIX)}
    return state


def refresh_position_tables(state: StateDict, model: MixFormerV2) -> StateDict:
    """Replace the fixed sin-cos tables by the model's own where their size differs (a new input size,
    e.g. 288 -> 224 for S); a table of the model's size is kept as saved (bit-exact official values)."""
    own = model.backbone.state_dict()
    out = dict(state)
    for name in POSITION_TABLES:
        key = f"backbone.{name}"
        if key not in out or out[key].shape != own[name].shape:
            out[key] = own[name]
    return out


register_family("mixformerv2", networks=(MixFormerV2,), convert=convert_for_model)
