"""Exact fast inference for asymmetric (MixFormer) attention: encode the templates once.

Under asymmetric attention template queries see only template keys, so the template tokens, and
every block's template keys/values, do not depend on the search image. ``encode_templates`` runs
the template tokens through all blocks once and keeps, per block, their keys/values and output
tokens; ``run_blocks_with_cache`` then runs only the search (+ extra) tokens per frame, each block
attending to ``[cached template K/V | own K/V]``, which is the key order of the full forward.
In eval mode this equals the full forward up to float rounding (the official ``forward_test``,
spec mixformerv2.md §1.5 / §9 #12, is broken; this replaces it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trackers.nn.attention import Attention
from trackers.nn.block import Block


@dataclass(frozen=True)
class TemplateCache:
    """Per block i: template keys/values (B, heads, Nt, head_dim) seen by later queries, and the
    template tokens after block i (B, Nt, C) for feature read-out. Nt counts all templates."""

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    @property
    def num_template(self) -> int:
        return self.outputs[-1].shape[1]

    @property
    def depth(self) -> int:
        return len(self.outputs)

    @property
    def tokens(self) -> Tensor:
        """Template tokens after the last block."""
        return self.outputs[-1]


def _heads(attn: Attention, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v as (B, heads, N, head_dim) from the block's own ``qkv`` projection."""
    b, n, _ = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    return qkv.unbind(0)


def block_with_prefix(block: Block, x: Tensor, prefix: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor, Tensor]:
    """One pre-norm block over ``x`` whose queries also attend to ``prefix`` keys/values placed first.

    Returns (tokens after the block, x's own keys, x's own values). Residual scale 1: deployed
    models have their depth-pruned blocks removed, not faded.
    """
    q, k, v = _heads(block.attn, block.norm1(x))
    if prefix is not None:
        pk, pv = prefix
        if pk.shape[0] != q.shape[0]:
            pk, pv = pk.expand(q.shape[0], -1, -1, -1), pv.expand(q.shape[0], -1, -1, -1)
        k_all, v_all = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
    else:
        k_all, v_all = k, v
    out = F.scaled_dot_product_attention(q, k_all, v_all)
    out = block.attn.proj(out.transpose(1, 2).reshape(x.shape))
    x = x + block.drop_path(out)
    return block.mlp_residual(x), k, v


def check_cacheable(blocks: Sequence[nn.Module], ce_blocks: Iterable[int] = ()) -> None:
    """Template caching is exact only when templates never see the search and no token is eliminated."""
    eliminating = sorted(ce_blocks)
    if eliminating:
        raise ValueError(
            f"blocks {eliminating} eliminate search tokens; template caching needs no candidate "
            f"elimination (use the full forward)"
        )
    for i, block in enumerate(blocks):
        if not isinstance(block, Block) or block.attn.mode != "asymmetric":
            raise ValueError(
                f"block {i} is not a plain asymmetric-attention block; template "
                f"caching needs attn_mode='asymmetric' (use the full forward)"
            )


def encode_templates(
    blocks: Sequence[nn.Module], template_tokens: Tensor, ce_blocks: Iterable[int] = ()
) -> TemplateCache:
    """Run embedded template tokens (B, Nt, C) through ``blocks`` with template-only attention.

    ``ce_blocks``: the running backbone's eliminating blocks (refused: the cache would be inexact).
    """
    check_cacheable(blocks, ce_blocks)
    keys, values, outputs = [], [], []
    x = template_tokens
    for block in blocks:
        x, k, v = block_with_prefix(block, x, None)
        keys.append(k)
        values.append(v)
        outputs.append(x)
    return TemplateCache(tuple(keys), tuple(values), tuple(outputs))


def run_blocks_with_cache(
    blocks: Sequence[nn.Module], cache: TemplateCache, tokens: Tensor, return_features: Iterable[int] = ()
) -> tuple[Tensor, dict[int, Tensor]]:
    """Run embedded search (+ extra) tokens (B, Ns, C) through ``blocks`` against the cached templates.

    Returns (full sequence [templates | tokens] after the last block, {i: full sequence after block i}).
    """
    if len(blocks) != cache.depth:
        raise ValueError(
            f"cache was built for {cache.depth} blocks but the model has "
            f"{len(blocks)}; call prepare_templates again after changing the depth"
        )
    wanted = set(return_features)
    features: dict[int, Tensor] = {}
    for i, block in enumerate(blocks):
        tokens, _, _ = block_with_prefix(block, tokens, (cache.keys[i], cache.values[i]))
        if i in wanted:
            features[i] = _with_templates(cache.outputs[i], tokens)
    return _with_templates(cache.tokens, tokens), features


def _with_templates(template_tokens: Tensor, tokens: Tensor) -> Tensor:
    if template_tokens.shape[0] != tokens.shape[0]:
        template_tokens = template_tokens.expand(tokens.shape[0], -1, -1)
    return torch.cat([template_tokens, tokens], dim=1)
