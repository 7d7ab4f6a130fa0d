"""OSTrack candidate elimination (CE): drop search tokens the target template ignores.

Spec compresstracker.md §1.3 / fixtures README A.5. A search token's score is its softmaxed
attention from the selected template query rows, averaged over those rows and over heads; the
block keeps ``ceil(ratio * L_s)`` tokens by a descending sort (kept tokens in score order).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

TemplateRange = Literal["ALL", "CTR_POINT", "CTR_REC"]


def template_centre_mask(
    batch_size: int, grid: tuple[int, int], template_range: TemplateRange, device: torch.device | None = None
) -> Tensor | None:
    """Template query rows that score search tokens, as a bool mask (B, Ht*Wt); None means all rows.

    CTR_POINT is the single centre cell ((g-1)//2 on each axis: 3 on 8x8, 5 on 12x12, 3 on 7x7);
    CTR_REC the central cells from (g-1)//2 to g//2 (rows/cols 3..4 on 8x8, 5..6 on 12x12).
    The official code (ce_utils.generate_mask_cond) tabulates these per grid; this is the same rule.
    """
    if template_range == "ALL":
        return None
    if template_range not in ("CTR_POINT", "CTR_REC"):
        raise ValueError(
            f"CE template range must be ALL, CTR_POINT or CTR_REC, "
            f"got {template_range!r}"
        )

    def centre(n: int) -> Tensor:
        lo = (n - 1) // 2
        hi = lo + 1 if template_range == "CTR_POINT" else n // 2 + 1
        idx = torch.arange(n, device=device)
        return (idx >= lo) & (idx < hi)

    mask = centre(grid[0])[:, None] & centre(grid[1])[None, :]
    return mask.flatten().unsqueeze(0).expand(batch_size, -1).clone()


def search_token_scores(
    attn: Tensor, num_template: int, num_search: int, template_mask: Tensor | None
) -> Tensor:
    """(B, L_s) mean attention paid to each search token by the selected template queries."""
    a = attn[:, :, :num_template, num_template : num_template + num_search]
    if template_mask is None:
        return a.mean(dim=2).mean(dim=1)
    rows = template_mask.to(a.dtype)
    rows = rows / rows.sum(dim=1, keepdim=True)
    return torch.einsum("bhts,bt->bhs", a, rows).mean(dim=1)


def eliminate(
    tokens: Tensor,
    attn: Tensor,
    num_template: int,
    num_search: int,
    search_index: Tensor,
    keep_ratio: float,
    template_mask: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Keep the best-attended search tokens.

    ``tokens`` is [templates | search | extra]; extras are kept untouched after the search part.
    Returns (tokens, kept global search index, removed global index or None, kept local index or
    None); the local index lets a caller gather any other per-token tensor the same way.
    """
    num_keep = math.ceil(keep_ratio * num_search)
    if num_keep >= num_search:
        return tokens, search_index, None, None
    scores = search_token_scores(attn, num_template, num_search, template_mask)
    order = torch.sort(scores, dim=1, descending=True).indices
    keep_local, drop_local = order[:, :num_keep], order[:, num_keep:]
    return (
        gather_search(tokens, keep_local, num_template, num_search),
        search_index.gather(1, keep_local),
        search_index.gather(1, drop_local),
        keep_local,
    )


def gather_search(tokens: Tensor, keep_local: Tensor, num_template: int, num_search: int) -> Tensor:
    """Apply a kept-search-token selection to a [templates | search | extra] sequence."""
    c = tokens.shape[-1]
    search = tokens[:, num_template : num_template + num_search]
    kept = search.gather(1, keep_local.unsqueeze(-1).expand(-1, -1, c))
    return torch.cat([tokens[:, :num_template], kept, tokens[:, num_template + num_search :]], dim=1)


def restore_search(search: Tensor, search_index: Tensor, total_search: int) -> Tensor:
    """Scatter kept search tokens back to their row-major positions; removed positions are exact zeros."""
    b, _, c = search.shape
    full = search.new_zeros(b, total_search, c)
    return full.scatter(1, search_index.unsqueeze(-1).expand(-1, -1, c), search)
