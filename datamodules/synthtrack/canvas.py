"""Sprites on a float canvas: the clipped overlap of a box with the canvas, alpha compositing."""

from __future__ import annotations

import numpy as np


def overlap(box: np.ndarray, width: int, height: int) -> tuple[slice, slice, slice, slice] | None:
    """Slices (canvas rows, canvas cols, sprite rows, sprite cols) of an xyxy box inside a canvas."""
    x1, y1, x2, y2 = (int(v) for v in box)
    fx1, fy1, fx2, fy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if fx2 <= fx1 or fy2 <= fy1:
        return None
    return slice(fy1, fy2), slice(fx1, fx2), slice(fy1 - y1, fy2 - y1), slice(fx1 - x1, fx2 - x1)


def composite(canvas: np.ndarray, texture: np.ndarray, alpha: np.ndarray, x1: int, y1: int) -> None:
    """Alpha-blend a sprite whose top-left is (x1, y1) onto the canvas, clipped to it (in place)."""
    h, w = alpha.shape
    ov = overlap(np.array([x1, y1, x1 + w, y1 + h]), canvas.shape[1], canvas.shape[0])
    if ov is None:
        return
    rows, cols, srows, scols = ov
    a = alpha[srows, scols, None]
    region = canvas[rows, cols]
    region *= 1 - a
    region += texture[srows, scols] * a
