"""SynthTrack appearance: shape masks, patterns, colours and the cluttered background."""

from __future__ import annotations

import math

import cv2
import numpy as np

from datamodules.synthtrack.canvas import composite
from datamodules.synthtrack.config import PATTERNS, SHAPE_OF_CLASS, SynthTrackConfig


def shape_mask(shape: str, res: int) -> np.ndarray:
    """Soft (res, res) float32 mask touching all four sides, so the sprite box is the GT box."""
    canvas = np.zeros((res, res), np.uint8)
    r = res - 1
    polygons = {
        "diamond": [(r / 2, 0), (r, r / 2), (r / 2, r), (0, r / 2)],
        "triangle": [(r / 2, 0), (r, r), (0, r)],
        "hexagon": [(r / 4, 0), (3 * r / 4, 0), (r, r / 2), (3 * r / 4, r), (r / 4, r), (0, r / 2)],
    }
    if shape == "rectangle":
        canvas[:] = 255
    elif shape == "ellipse":
        cv2.ellipse(canvas, (r // 2, r // 2), (r // 2, r // 2), 0, 0, 360, 255, -1, cv2.LINE_AA)
        canvas[:, [0, r]] = np.maximum(canvas[:, [0, r]], 1)  # keep the bounding box tight to the sprite
    elif shape == "cross":
        a, b = round(0.3 * r), round(0.7 * r)
        canvas[a : b + 1, :] = 255
        canvas[:, a : b + 1] = 255
    else:
        pts = np.round(np.array(polygons[shape])).astype(np.int32)
        cv2.fillPoly(canvas, [pts], 255, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255.0


def draw_pattern(rng: np.random.Generator, res: int, kind: str) -> np.ndarray:
    """A (res, res) float32 pattern value in [0, 1] that two colours are mixed by."""
    y, x = np.mgrid[0:res, 0:res].astype(np.float32)
    period = float(rng.uniform(res / 6, res / 3))
    if kind == "striped":
        theta = rng.uniform(0, math.pi)
        v = np.sin(2 * math.pi * (x * math.cos(theta) + y * math.sin(theta)) / period) > 0
    elif kind == "checkered":
        v = ((x // (period / 2)) + (y // (period / 2))) % 2 > 0
    elif kind == "dotted":
        v = np.sin(2 * math.pi * x / period) * np.sin(2 * math.pi * y / period) > 0.3
    elif kind == "ringed":
        c = (res - 1) / 2
        v = np.sin(2 * math.pi * np.hypot(x - c, y - c) / (period / 1.5)) > 0
    else:
        v = _smooth_noise(rng, res, res, 1, cells=4)[..., 0] > 0.5
    return v.astype(np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, channels: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upsampled bicubically, normalised per channel."""
    grid = rng.random((cells, max(2, round(cells * w / h)), channels)).astype(np.float32)
    up = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, channels)
    lo, hi = up.min(axis=(0, 1)), up.max(axis=(0, 1))
    return (up - lo) / np.maximum(hi - lo, 1e-6)


def hsv_colours(hsv: np.ndarray) -> np.ndarray:
    """(N, 3) OpenCV HSV (H in 0..179) -> (N, 3) float32 BGR."""
    px = np.clip(np.round(hsv), 0, [179, 255, 255]).astype(np.uint8)[None]
    return cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0].astype(np.float32)


def random_palette(rng: np.random.Generator) -> np.ndarray:
    """Two HSV colours: a saturated one and a contrasting one of a nearby hue."""
    hue = rng.uniform(0, 180)
    return np.array(
        [
            [hue, rng.uniform(170, 255), rng.uniform(170, 255)],
            [(hue + rng.uniform(-15, 15)) % 180, rng.uniform(120, 255), rng.uniform(30, 110)],
        ]
    )


def mix_colours(pattern: np.ndarray, bgr: np.ndarray) -> np.ndarray:
    return bgr[0] * (1 - pattern[..., None]) + bgr[1] * pattern[..., None]


def colour_name(hue: float) -> str:
    bounds = [(8, "red"), (20, "orange"), (33, "yellow"), (78, "green"), (95, "cyan"), (130, "blue"),
              (150, "purple"), (170, "pink"), (180, "red")]
    return next(name for bound, name in bounds if hue < bound)


def draw_background(rng: np.random.Generator, h: int, w: int, shape: str, cfg: SynthTrackConfig) -> np.ndarray:
    """Cluttered float32 BGR canvas: coloured multi-octave noise plus textured shapes (some of the target's shape)."""
    lum = sum(_smooth_noise(rng, h, w, 1, cells) * wgt for cells, wgt in ((3, 0.5), (8, 0.3), (24, 0.2)))
    tint = _smooth_noise(rng, h, w, 3, 3)
    canvas = (60 + 150 * lum) * (0.6 + 0.4 * tint)
    side = min(h, w)
    for _ in range(cfg.clutter_shapes):
        s = rng.uniform(*cfg.clutter_size) * side
        log_aspect = rng.uniform(-cfg.initial_log_aspect, cfg.initial_log_aspect)
        cw, ch = max(2, round(s * math.exp(log_aspect))), max(2, round(s * math.exp(-log_aspect)))
        x1, y1 = int(rng.integers(-cw // 2, w - cw // 2)), int(rng.integers(-ch // 2, h - ch // 2))
        kind = shape if rng.random() < cfg.clutter_same_shape_prob else str(rng.choice(list(SHAPE_OF_CLASS.values())))
        res = cfg.sprite_resolution
        tex = mix_colours(draw_pattern(rng, res, str(rng.choice(PATTERNS))), hsv_colours(random_palette(rng)))
        tex *= rng.uniform(*cfg.clutter_dimming)
        mask = shape_mask(kind, res)
        composite(canvas, cv2.resize(tex, (cw, ch)), cv2.resize(mask, (cw, ch)), x1, y1)
    return canvas.astype(np.float32)
