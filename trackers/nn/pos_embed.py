"""Position-embedding tables for the one-stream ViT.

Two families exist (specs compresstracker.md §1.8, mixformerv2.md §1.3):
- learned tables (OSTrack), initialised by resizing MAE's 14x14 table to each grid;
- fixed 2-D sin-cos tables (MixFormer), regenerated for every grid, never resized.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MAE_IMAGE_SIZE = 224
"""Input side MAE / timm ViT-B was pretrained at; sets the grid of the (dead) ``pos_embed`` table."""

SINCOS_TEMPERATURE = 10000.0


def mae_grid(patch_size: int) -> int:
    """Side of the MAE position grid (14 for patch 16)."""
    return MAE_IMAGE_SIZE // patch_size


def _sincos_1d(positions: Tensor, dim: int) -> Tensor:
    """MAE 1-D table: ``[sin(p * w_k), cos(p * w_k)]`` with ``w_k = T^(-k / (dim/2))``."""
    half = dim // 2
    omega = torch.arange(half, dtype=torch.float64, device=positions.device) / half
    omega = SINCOS_TEMPERATURE ** (-omega)
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d_table(grid: tuple[int, int], dim: int, device: torch.device | None = None) -> Tensor:
    """Fixed 2-D sin-cos table (1, H*W, dim), row-major tokens.

    The first ``dim/2`` channels encode the column (x) index and the last ``dim/2`` the row (y)
    index, both starting at 0 (MAE's ``get_2d_sincos_pos_embed``; each grid is encoded on its own).
    """
    if dim % 4:
        raise ValueError(f"sin-cos tables need embed_dim divisible by 4, got {dim}")
    h, w = grid
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    table = torch.cat([_sincos_1d(cols, dim // 2), _sincos_1d(rows, dim // 2)], dim=1)
    return table.to(torch.float32).unsqueeze(0)


def resize_pos_table(table: Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int]) -> Tensor:
    """Bicubic resize (align_corners=False) of a (1, Hs*Ws, C) table to (1, Hd*Wd, C).

    This is OSTrack's ``finetune_track`` adaptation of MAE's table to the template/search grids.
    """
    c = table.shape[-1]
    grid = table.reshape(1, src_grid[0], src_grid[1], c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=dst_grid, mode="bicubic", align_corners=False)
    return grid.flatten(2).transpose(1, 2)
