"""One-stream ViT backbone shared by every family (OSTrack, CompressTracker, MixViT, MixFormerV2, DyTrack).

Methods drive it block by block::

    state = vit.embed(template, search)              # patch + position embedding, token layout
    state = vit.run_blocks(state, 0, k)              # blocks [0, k)
    state = vit.run_blocks(state, k, d, gamma=g)     # residual scale per block (depth pruning)
    state = vit.run_blocks(state, a, b, blocks=teacher.backbone.blocks)   # stage swapping
    for i, state in vit.iter_blocks(state): ...      # one state per block; ``break`` = early exit
    final = vit.finalize(state)                      # final norm, CE restore, original order
    final.search_map()                               # what a head reads, by name

Stage swapping, early exits, layer decay and feature mimicking are all built on this interface.
Token layout: ``[templates (T * Nt) | search (Ns, possibly pruned by CE) | extra tokens]``; heads
read the parts through ``TokenState`` (never by slicing), so appending a token cannot shift them.
Candidate elimination belongs to the running backbone (``ce_keep_ratio_at``), not to the block
objects, so blocks lent from a CE teacher eliminate nothing unless the call asks for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from timm.layers import PatchEmbed
from torch import Tensor, nn

from trackers.nn.attention import AttentionMode
from trackers.nn.block import Block
from trackers.nn.candidate_elimination import (
    TemplateRange,
    eliminate,
    gather_search,
    restore_search,
    template_centre_mask,
)
from trackers.nn.pos_embed import mae_grid, resize_pos_table, sincos_2d_table

PosEmbedKind = Literal["learned", "sincos"]
GammaMode = Literal["branch", "block"]
WeightInit = Literal["timm", "torch"]
"""How the backbone's Linear layers start: 'timm' (trunc_normal std 0.02, zero bias: OSTrack, MixViT and
CompressTracker call timm's ``init_weights``) or 'torch' (PyTorch's default, std 1/sqrt(3 fan_in): the
official MixFormerV2 backbone skips timm's constructor, mixformerv2.md §1.1). Equal at width 768 (0.020
vs 0.021); at a miniature's width 64 the torch init is 3.6x larger, and MixFormerV2 learns ~1.6x faster
with it (reviews/mixformerv2_training_probe_2026-12.md)."""
Gamma = Sequence[float | Tensor] | Mapping[int, float | Tensor] | None
UNUSED_TIMM_PARAMS = ("cls_token", "pos_embed", "norm", "head")
"""Every dead timm leftover a one-stream checkpoint may hold (MixFormer keeps all four, OSTrack two)."""
VIT_SIZES: dict[str, dict[str, float | int]] = {
    "base_patch16": dict(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, patch_size=16),
    "large_patch16": dict(embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0, patch_size=16),
}
"""The one ViT size table (timm/MAE variant names, as MixFormer's ``MODEL.VIT_TYPE`` spells them)."""
IMAGENET_CLASSES = 1000
INIT_STD = 0.02


@dataclass(frozen=True)
class TokenState:
    """The token sequence between blocks: the layout heads read by name, plus CE bookkeeping.

    tokens:          (B, N, C) with N = num_template + num_search + num_extra.
    search_grid:     (H, W) of the full search grid (``search_map`` reshapes to it).
    search_index:    (B, num_search) row-major position of each current search token on the search grid.
    removed_indexes: per eliminating block, (B, n_removed) positions removed there (descending score).
    final:           True after ``OneStreamViT.finalize`` (norm applied, search restored to the grid).
    """

    tokens: Tensor
    num_template: int
    num_search: int
    num_extra: int
    total_search: int
    search_grid: tuple[int, int]
    search_index: Tensor
    removed_indexes: tuple[Tensor, ...] = ()
    ce_template_mask: Tensor | None = None
    ce_keep_rate: float | None = None
    final: bool = False

    @property
    def template_tokens(self) -> Tensor:
        """(B, T * Nt, C): every template's tokens, template by template."""
        return self.tokens[:, : self.num_template]

    @property
    def search_tokens(self) -> Tensor:
        """(B, num_search, C): the current search tokens (after CE: the kept ones, ``search_index`` order)."""
        return self.tokens[:, self.num_template : self.num_template + self.num_search]

    @property
    def extra_tokens(self) -> Tensor:
        """(B, num_extra, C): the learned tokens after the search (MixFormerV2 prediction tokens, an IoU token)."""
        return self.tokens[:, self.num_template + self.num_search :]

    def search_map(self) -> Tensor:
        """Search tokens as a (B, C, H, W) map in row-major grid order; needs the full grid (finalize after CE)."""
        if self.num_search != self.total_search:
            raise ValueError(
                f"only {self.num_search} of {self.total_search} search tokens are present (candidate "
                f"elimination); call finalize(state) to restore the grid before reading the search map"
            )
        h, w = self.search_grid
        b, _, c = self.tokens.shape
        return self.search_tokens.transpose(1, 2).reshape(b, c, h, w)

    def replace(self, **changes: object) -> TokenState:
        return dataclasses.replace(self, **changes)


@dataclass
class BackboneOutput:
    """``state`` after finalize, ``features`` after the requested blocks (before the final norm)."""

    state: TokenState
    features: dict[int, Tensor]

    @property
    def tokens(self) -> Tensor:
        return self.state.tokens

    @property
    def removed_indexes(self) -> tuple[Tensor, ...]:
        return self.state.removed_indexes


class OneStreamViT(nn.Module):
    """Joint template/search ViT (timm/MAE key names, OSTrack/MixFormer position-table names).

    Args:
        embed_dim, depth, num_heads: ViT width, number of blocks, heads.
        mlp_ratio: one ratio, or one per block (MixFormerV2 MLP reduction).
        patch_size, template_size, search_size: square inputs; grids are size // patch_size.
        num_templates: templates in the input (MixFormer: 2, static + online).
        pos_embed: 'learned' (OSTrack ``pos_embed_z``/``pos_embed_x``, trainable) or 'sincos'
            (MixFormer ``pos_embed_t``/``pos_embed_s``, fixed, frozen parameters so they stay in
            the state dict).
        num_extra_tokens: learned tokens appended after search (MixFormerV2 ``reg_tokens`` +
            ``pos_embed_reg``).
        attn_mode: 'full' or 'asymmetric' (template queries see only template keys).
        ce_loc, ce_keep_ratio: blocks that do candidate elimination and their keep ratios (kept on
            the backbone, ``ce_keep_ratio_at``: CE is a property of the running backbone).
        ce_template_range: template rows that score search tokens (ALL, CTR_POINT, CTR_REC).
        final_norm: apply ``norm`` after the last block (OSTrack yes, MixFormer no).
        unused_timm_params: dead timm leftovers kept for strict checkpoint loading, any of
            'cls_token', 'pos_embed' (1, 1 + 14*14, C), 'norm' (when not applied), 'head' (1000 x C).
        drop_path_rate: max stochastic-depth rate (linspace from 0 over the blocks), or one rate per block.
        gamma_mode: how a residual scale gamma enters a block. 'branch' (the official MixFormerV2
            code, mixformerv2.md §4.2/§9.6): ``x += g*attn(x); x += g*mlp(x)``. 'block' (the paper's
            Eq. 8): ``x += g*(block(x) - x)``. They agree only at g in {0, 1}.
        weight_init: the family's Linear init, 'timm' or 'torch' (``WeightInit``).
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
        num_templates: int = 1,
        pos_embed: PosEmbedKind = "learned",
        num_extra_tokens: int = 0,
        attn_mode: AttentionMode = "full",
        ce_loc: Sequence[int] = (),
        ce_keep_ratio: Sequence[float] = (),
        ce_template_range: TemplateRange = "ALL",
        final_norm: bool = True,
        unused_timm_params: Iterable[str] = (),
        drop_path_rate: float | Sequence[float] = 0.0,
        qkv_bias: bool = True,
        norm_eps: float = 1e-6,
        gamma_mode: GammaMode = "branch",
        weight_init: WeightInit = "timm",
    ) -> None:
        super().__init__()
        unused = tuple(unused_timm_params)
        self.unused_timm_params = unused
        self._check_args(depth, mlp_ratio, ce_loc, ce_keep_ratio, pos_embed, gamma_mode, unused, final_norm)
        if weight_init not in ("timm", "torch"):
            raise ValueError(f"trackers/nn/vit.py: weight_init must be 'timm' or 'torch', got {weight_init!r}")
        self.weight_init: WeightInit = weight_init
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.template_grid = (template_size // patch_size,) * 2
        self.search_grid = (search_size // patch_size,) * 2
        self.num_templates = num_templates
        self.pos_embed_kind: PosEmbedKind = pos_embed
        self.num_extra_tokens = num_extra_tokens
        self.ce_template_range: TemplateRange = ce_template_range
        self.final_norm = final_norm
        self.gamma_mode: GammaMode = gamma_mode
        n_t, n_s = _numel(self.template_grid), _numel(self.search_grid)

        if "cls_token" in unused:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        if "pos_embed" in unused:
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + mae_grid(patch_size) ** 2, embed_dim))
        if pos_embed == "learned":
            self.pos_embed_z = nn.Parameter(torch.zeros(1, n_t, embed_dim))
            self.pos_embed_x = nn.Parameter(torch.zeros(1, n_s, embed_dim))
        else:
            self.pos_embed_t = nn.Parameter(sincos_2d_table(self.template_grid, embed_dim), requires_grad=False)
            self.pos_embed_s = nn.Parameter(sincos_2d_table(self.search_grid, embed_dim), requires_grad=False)
        if num_extra_tokens:
            self.reg_tokens = nn.Parameter(torch.zeros(1, num_extra_tokens, embed_dim))
            self.pos_embed_reg = nn.Parameter(torch.zeros(1, num_extra_tokens, embed_dim))

        self.patch_embed = PatchEmbed(
            img_size=None, patch_size=patch_size, in_chans=3, embed_dim=embed_dim, strict_img_size=False
        )
        ratios = _per_block(mlp_ratio, depth)
        rates = _per_block(drop_path_rate, depth) if isinstance(drop_path_rate, Sequence) else linspace_rates(
            drop_path_rate, depth
        )
        self.ce_keep_ratios: dict[int, float] = {int(i): float(r) for i, r in zip(ce_loc, ce_keep_ratio) if r < 1}
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, ratios[i], qkv_bias, rates[i], norm_eps, attn_mode) for i in range(depth)
        )
        if final_norm or "norm" in unused:
            self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        if "head" in unused:
            self.head = nn.Linear(embed_dim, IMAGENET_CLASSES)
        self._init_weights()

    # ------------------------------------------------------------------ construction helpers

    @staticmethod
    def _check_args(
        depth: int,
        mlp_ratio: float | Sequence[float],
        ce_loc: Sequence[int],
        ce_keep_ratio: Sequence[float],
        pos_embed: str,
        gamma_mode: str,
        unused: tuple[str, ...],
        final_norm: bool,
    ) -> None:
        where = "trackers/nn/vit.py"
        if len(ce_loc) != len(ce_keep_ratio):
            raise ValueError(f"{where}: ce_loc {list(ce_loc)} and ce_keep_ratio {list(ce_keep_ratio)} differ in length")
        if any(not 0 <= i < depth for i in ce_loc):
            raise ValueError(f"{where}: ce_loc {list(ce_loc)} must index blocks 0..{depth - 1}")
        if pos_embed not in ("learned", "sincos"):
            raise ValueError(f"{where}: pos_embed must be 'learned' or 'sincos', got {pos_embed!r}")
        if gamma_mode not in ("branch", "block"):
            raise ValueError(f"{where}: gamma_mode must be 'branch' or 'block', got {gamma_mode!r}")
        bad = set(unused) - set(UNUSED_TIMM_PARAMS)
        if bad:
            raise ValueError(f"{where}: unknown unused_timm_params {sorted(bad)}; allowed {UNUSED_TIMM_PARAMS}")
        if final_norm and "norm" in unused:
            raise ValueError(f"{where}: 'norm' cannot be both applied (final_norm=True) and unused")
        if not isinstance(mlp_ratio, (int, float)) and len(mlp_ratio) != depth:
            raise ValueError(f"{where}: mlp_ratio list has {len(mlp_ratio)} entries for depth {depth}")

    def _init_weights(self) -> None:
        """The family's official init (``weight_init``); pretrained or official weights overwrite it.

        Both schemes: ``reg_tokens`` (and timm's dead ``pos_embed``) trunc_normal 0.02, ``cls_token``
        normal 1e-6, ``pos_embed_reg`` zeros, LayerNorm 1/0, the patch Conv2d PyTorch's default.

        Learned position tables start as MAE's would arrive after ``finetune_track``: MAE's table
        is the fixed 2-D sin-cos one, bicubic-resized from 14x14 to each grid. A run without MAE
        weights (offline, SynthTrack) then still starts with spatial structure. (The official OSTrack
        and MixViT constructors trunc_normal a 14x14 table first; every official run overwrites it
        with MAE's, which is the table this starts from.)
        """
        for name in ("pos_embed", "reg_tokens"):
            if hasattr(self, name):
                nn.init.trunc_normal_(getattr(self, name), std=INIT_STD)
        if self.pos_embed_kind == "learned":
            mae = (mae_grid(self.patch_size),) * 2
            table = sincos_2d_table(mae, self.embed_dim)
            with torch.no_grad():
                self.pos_embed_z.copy_(resize_pos_table(table, mae, self.template_grid))
                self.pos_embed_x.copy_(resize_pos_table(table, mae, self.search_grid))
        if hasattr(self, "cls_token"):
            nn.init.normal_(self.cls_token, std=1e-6)
        if self.weight_init == "torch":
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=INIT_STD)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def num_template_tokens(self) -> int:
        """Template tokens of one template."""
        return _numel(self.template_grid)

    def ce_keep_ratio_at(self, index: int) -> float:
        """Keep ratio of this backbone's block ``index`` (1: no candidate elimination there)."""
        return self.ce_keep_ratios.get(index, 1.0)

    def position_tables(self) -> tuple[Tensor, Tensor]:
        """(template table, search table), whichever kind this backbone has."""
        if self.pos_embed_kind == "learned":
            return self.pos_embed_z, self.pos_embed_x
        return self.pos_embed_t, self.pos_embed_s

    def unused_parameters(self) -> list[nn.Parameter]:
        """The dead timm leftovers: in the state dict for strict loading, never in the forward.

        Training freezes them so DDP does not wait for gradients that never come (instead of
        paying for ``find_unused_parameters``); they would not change anyway.
        """
        out: list[nn.Parameter] = []
        for name in self.unused_timm_params:
            if name == "norm" and self.final_norm:
                continue
            attr = getattr(self, name, None)
            out += [attr] if isinstance(attr, nn.Parameter) else list(attr.parameters()) if attr is not None else []
        return out

    def remove_blocks(self, indices: Iterable[int]) -> None:
        """Drop blocks and renumber the rest 0..d'-1 (depth pruning); surviving blocks keep weights and CE ratios."""
        drop = set(indices)
        if any(not 0 <= i < self.depth for i in drop):
            raise ValueError(f"remove_blocks {sorted(drop)} outside blocks 0..{self.depth - 1}")
        kept = [i for i in range(self.depth) if i not in drop]
        ratios = self.ce_keep_ratios
        self.ce_keep_ratios = {new: ratios[old] for new, old in enumerate(kept) if old in ratios}
        self.blocks = nn.ModuleList(self.blocks[i] for i in kept)

    def set_drop_path_rate(self, rate: float) -> None:
        """Re-spread stochastic depth linearly over the current depth (the official rebuild after pruning)."""
        for block, r in zip(self.blocks, linspace_rates(rate, self.depth)):
            block.set_drop_path(r)

    def ce_template_mask(self, batch_size: int, device: torch.device | None = None) -> Tensor | None:
        """The configured CE template-row mask (test time: the same centre cells every frame)."""
        return template_centre_mask(batch_size, self.template_grid, self.ce_template_range, device)

    # ------------------------------------------------------------------ block-by-block driving

    def embed(
        self,
        template: Tensor,
        search: Tensor,
        ce_template_mask: Tensor | None = None,
        ce_keep_rate: float | None = None,
    ) -> TokenState:
        """Patch-embed templates (B,3,H,W) or (B,T,3,H,W) and search, add position tables, lay out tokens.

        All templates share the template table; each grid is embedded separately (no shared frame).
        """
        z = self.embed_templates(template)
        x = self.embed_search(search)
        b, n_s = x.shape[0], x.shape[1] - self.num_extra_tokens
        return TokenState(
            tokens=torch.cat([z, x], dim=1),
            num_template=z.shape[1],
            num_search=n_s,
            num_extra=self.num_extra_tokens,
            total_search=n_s,
            search_grid=self.search_grid,
            search_index=_grid_index(b, n_s, x.device),
            ce_template_mask=ce_template_mask,
            ce_keep_rate=ce_keep_rate,
        )

    def layout(self, tokens: Tensor) -> TokenState:
        """The layout of a full, unpruned ``[templates | search | extra]`` sequence run elsewhere (template cache)."""
        n_t = self.num_templates * self.num_template_tokens
        n_s = tokens.shape[1] - n_t - self.num_extra_tokens
        return TokenState(
            tokens=tokens,
            num_template=n_t,
            num_search=n_s,
            num_extra=self.num_extra_tokens,
            total_search=n_s,
            search_grid=self.search_grid,
            search_index=_grid_index(tokens.shape[0], n_s, tokens.device),
        )

    def embed_templates(self, template: Tensor) -> Tensor:
        """Templates (B,3,H,W) or (B,T,3,H,W) -> (B, T*Nt, C) tokens with the shared template table."""
        if template.dim() == 4:
            template = template.unsqueeze(1)
        b, t = template.shape[:2]
        if t != self.num_templates:
            raise ValueError(
                f"got {t} templates but the backbone was built with num_templates="
                f"{self.num_templates}; pass (B, {self.num_templates}, 3, H, W) or rebuild with num_templates={t}"
            )
        z = self.patch_embed(template.flatten(0, 1)) + self.position_tables()[0]
        return z.reshape(b, t * z.shape[1], self.embed_dim)

    def embed_search(self, search: Tensor) -> Tensor:
        """Search (B,3,H,W) -> (B, Ns + extra, C): search tokens, then the extra learned tokens."""
        x = self.patch_embed(search) + self.position_tables()[1]
        if not self.num_extra_tokens:
            return x
        extra = (self.reg_tokens + self.pos_embed_reg).expand(x.shape[0], -1, -1)
        return torch.cat([x, extra], dim=1)

    def run_blocks(
        self,
        state: TokenState,
        start: int,
        end: int,
        *,
        blocks: Sequence[nn.Module] | None = None,
        gamma: Gamma = None,
        ce_keep_ratios: Mapping[int, float] | None = None,
    ) -> TokenState:
        """Run blocks [start, end) of this backbone, or of ``blocks`` (e.g. a teacher's) on the same state.

        ``gamma`` holds per-block residual scales indexed by absolute block index (sequence or
        mapping; missing entries mean 1). Candidate elimination follows this backbone's CE blocks,
        whoever owns the block objects; ``ce_keep_ratios`` (absolute index -> ratio) replaces them
        for this call, e.g. ``teacher.backbone.ce_keep_ratios`` to run a CE teacher as it was trained.
        """
        for _, state in self.iter_blocks(state, start, end, blocks=blocks, gamma=gamma, ce_keep_ratios=ce_keep_ratios):
            pass
        return state

    def iter_blocks(
        self,
        state: TokenState,
        start: int = 0,
        end: int | None = None,
        *,
        blocks: Sequence[nn.Module] | None = None,
        gamma: Gamma = None,
        ce_keep_ratios: Mapping[int, float] | None = None,
    ) -> Iterator[tuple[int, TokenState]]:
        """Yield ``(i, state after block i)`` for blocks [start, end) (default: to the last block).

        The early stop of early-exit trackers: ``break`` when an exit is confident, and the later
        blocks never run (timm's ``forward_intermediates(stop_early=True)``). Arguments as ``run_blocks``.
        """
        if state.final:
            raise ValueError(
                "this state is finalized (normed, search restored); run blocks on the state before finalize"
            )
        blocks = self.blocks if blocks is None else blocks
        ratios = self.ce_keep_ratios if ce_keep_ratios is None else ce_keep_ratios
        for i in range(start, self.depth if end is None else end):
            state = self._run_block(blocks[i], state, _gamma_at(gamma, i), ratios.get(i, 1.0))
            yield i, state

    def finalize(self, state: TokenState) -> TokenState:
        """Final norm (if applied), then CE restore: search tokens back in row-major order, removed ones zero.

        Non-destructive (a new state), so an early-exit tracker may finalize after any block.
        ``removed_indexes`` stay on the result for the parity outputs and CE statistics.
        """
        if state.final:
            return state
        x = self.norm(state.tokens) if self.final_norm else state.tokens
        if state.removed_indexes:
            t, s = state.num_template, state.num_search
            search = restore_search(x[:, t : t + s], state.search_index, state.total_search)
            x = torch.cat([x[:, :t], search, x[:, t + s :]], dim=1)
        return state.replace(
            tokens=x,
            num_search=state.total_search,
            search_index=_grid_index(x.shape[0], state.total_search, x.device),
            final=True,
        )

    def forward(
        self,
        template: Tensor,
        search: Tensor,
        ce_template_mask: Tensor | None = None,
        ce_keep_rate: float | None = None,
        gamma: Gamma = None,
        return_features: Iterable[int] = (),
    ) -> BackboneOutput:
        """embed -> all blocks -> finalize, collecting the raw tokens after the blocks in ``return_features``.

        Features are taken before the final norm; after a CE block they hold only the kept search
        tokens, in score order (``state.search_index`` maps them back).
        """
        return self.forward_state(self.embed(template, search, ce_template_mask, ce_keep_rate), gamma, return_features)

    def forward_state(
        self, state: TokenState, gamma: Gamma = None, return_features: Iterable[int] = ()
    ) -> BackboneOutput:
        """All blocks on an embedded state, then finalize (what every family's ``forward`` runs)."""
        wanted = set(return_features)
        features: dict[int, Tensor] = {}
        for i, state in self.iter_blocks(state, gamma=gamma):
            if i in wanted:
                features[i] = state.tokens
        return BackboneOutput(self.finalize(state), features)

    # ------------------------------------------------------------------ one block

    def _run_block(self, block: Block, state: TokenState, gamma: float | Tensor, ce_ratio: float) -> TokenState:
        """``ce_ratio`` < 1 marks an eliminating position; the state's ``ce_keep_rate`` (warm-up) overrides it."""
        ratio = ce_ratio if state.ce_keep_rate is None else state.ce_keep_rate
        eliminates = ce_ratio < 1 and ratio < 1
        if not eliminates and self.gamma_mode == "branch":
            return state.replace(tokens=block(state.tokens, state.num_template, gamma))

        x_in, n_search = state.tokens, state.num_search
        x, attn = block.attn_residual(
            x_in, state.num_template, gamma if self.gamma_mode == "branch" else 1.0, need_weights=eliminates
        )
        if eliminates:
            x, search_index, removed, keep_local = eliminate(
                x, attn, state.num_template, state.num_search, state.search_index, ratio, state.ce_template_mask
            )
            if removed is not None:
                state = state.replace(
                    search_index=search_index,
                    removed_indexes=(*state.removed_indexes, removed),
                    num_search=search_index.shape[1],
                )
                x_in = gather_search(x_in, keep_local, state.num_template, n_search)
        if self.gamma_mode == "branch":
            return state.replace(tokens=block.mlp_residual(x, gamma))
        x = block.mlp_residual(x)
        return state.replace(tokens=_blend(x_in, x, gamma))


def linspace_rates(max_rate: float, depth: int) -> list[float]:
    """Stochastic-depth rates 0..max_rate over ``depth`` blocks (pure Python, so meta-device builds work)."""
    return [max_rate * i / max(depth - 1, 1) for i in range(depth)]


def _blend(x_in: Tensor, x_out: Tensor, gamma: float | Tensor) -> Tensor:
    """Whole-block residual scale: ``x_in + gamma * (x_out - x_in)``."""
    if isinstance(gamma, (int, float)) and gamma == 1:
        return x_out
    return x_in + gamma * (x_out - x_in)


def _gamma_at(gamma: Gamma, index: int) -> float | Tensor:
    if gamma is None:
        return 1.0
    if isinstance(gamma, Mapping):
        return gamma.get(index, 1.0)
    return gamma[index]


def _grid_index(batch: int, num_search: int, device: torch.device) -> Tensor:
    """Row-major search positions 0..Ns-1 for every sample (the layout before any elimination)."""
    return torch.arange(num_search, device=device).unsqueeze(0).expand(batch, -1)


def _per_block(value: float | Sequence[float], depth: int) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)] * depth
    if len(value) != depth:
        raise ValueError(f"per-block list has {len(value)} entries for depth {depth}")
    return [float(v) for v in value]


def _numel(grid: tuple[int, int]) -> int:
    return grid[0] * grid[1]
