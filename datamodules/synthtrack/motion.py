"""SynthTrack motion: the target's path and size, fast-motion jumps and out-of-view spells, the distractors and
occluders around it, camera pan and light; all planned before any pixel is drawn."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from datamodules.synthtrack.appearance import colour_name, draw_pattern, hsv_colours, mix_colours, random_palette, shape_mask
from datamodules.synthtrack.config import OCCLUDER_SHAPES, PATTERNS, SHAPE_OF_CLASS, SynthTrackConfig
from trackers.nn.box_ops import cxcywh_to_xyxy_np


def _oscillation(rng: np.random.Generator, t: np.ndarray, period: tuple[float, float], parts: int = 2) -> np.ndarray:
    """Sum of ``parts`` random sinusoids with peak amplitude about 1 (a smooth wandering path)."""
    weights = rng.dirichlet(np.ones(parts))
    periods = rng.uniform(*period, size=parts)
    phases = rng.uniform(0, 2 * math.pi, size=parts)
    return (weights[:, None] * np.sin(2 * math.pi * t[None] / periods[:, None] + phases[:, None])).sum(0)


def _integer_boxes(cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray, min_px: int) -> np.ndarray:
    """(L, 4) int64 xyxy sprite boxes of integer size at the given centres (floor(v + 0.5) keeps sizes exact)."""
    wi = np.maximum(min_px, np.floor(w + 0.5))
    hi = np.maximum(min_px, np.floor(h + 0.5))
    xyxy = cxcywh_to_xyxy_np(np.stack([cx, cy, wi, hi], -1))
    return np.floor(xyxy + 0.5).astype(np.int64)


@dataclass
class Actor:
    """A drawn object: its sprite, per-frame boxes (xyxy int), activity and depth (target = 0)."""

    texture: np.ndarray
    mask: np.ndarray
    boxes: np.ndarray
    depth: np.ndarray
    active: np.ndarray


@dataclass
class Plan:
    actors: list[Actor]  # actors[0] is the target
    camera: np.ndarray  # (L, 2) int background window offsets
    gain: np.ndarray  # (L,) global illumination gain
    gradient: np.ndarray  # (L, 3) light gradient (strength, cos, sin)
    description: str


@dataclass(frozen=True)
class Look:
    """The target's appearance, which distractors imitate."""

    shape: str
    pattern_kind: str
    pattern: np.ndarray
    palette: np.ndarray  # (2, 3) HSV


def plan_sequence(rng: np.random.Generator, length: int, width: int, height: int, cls: str,
                   cfg: SynthTrackConfig) -> Plan:
    t = np.arange(length, dtype=np.float64)
    calm = min(cfg.calm_start, length - 1)
    kind = str(rng.choice(PATTERNS))
    look = Look(SHAPE_OF_CLASS[cls], kind, draw_pattern(rng, cfg.sprite_resolution, kind), random_palette(rng))

    base = rng.uniform(*cfg.target_size) * min(width, height)
    w, h = _sizes(rng, t, base, width, height, cfg)
    cx, cy = _wander(rng, t, w, h, width, height, cfg)
    for _ in range(int(rng.integers(cfg.jumps[0], cfg.jumps[1] + 1))):  # fast motion
        start = int(rng.integers(1, length)) if length > 1 else 0
        angle = rng.uniform(0, 2 * math.pi)
        step = rng.uniform(*cfg.jump_size) * min(width, height)
        cx[start:] += step * math.cos(angle)
        cy[start:] += step * math.sin(angle)
    cx, cy = np.clip(cx, w / 2, width - w / 2), np.clip(cy, h / 2, height - h / 2)
    anchor = (cx.copy(), cy.copy())  # where distractors orbit, even while the target is away
    if rng.random() < cfg.out_of_view_prob:
        _push_out_of_view(rng, cx, cy, w, h, width, height, calm, cfg)

    always = np.ones(length, bool)
    target = Actor(mix_colours(look.pattern, hsv_colours(look.palette)), shape_mask(look.shape, cfg.sprite_resolution),
                    _integer_boxes(cx, cy, w, h, cfg.min_object_px), np.zeros(length), always)
    actors = [target]
    for _ in range(int(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1))):
        actors.append(_distractor(rng, t, look, base, w, h, anchor, width, height, calm, cfg))
    for _ in range(int(rng.integers(cfg.occlusions[0], cfg.occlusions[1] + 1))):
        occluder = _occluder(rng, t, cx, cy, w, h, calm, cfg)
        if occluder is not None:
            actors.append(occluder)

    camera, gain, gradient = _camera_and_light(rng, t, width, height, calm, cfg)
    description = f"{colour_name(float(look.palette[0, 0]))} {kind} {cls} moving among similar {cls}s\n"
    return Plan(actors, camera, gain, gradient, description)


def _sizes(rng: np.random.Generator, t: np.ndarray, base: float, width: int, height: int,
           cfg: SynthTrackConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (w, h): a random rest aspect, oscillating log-scale and log-aspect."""
    log_scale = rng.uniform(*cfg.scale_amplitude) * _oscillation(rng, t, cfg.motion_period, 1)
    log_aspect = (rng.uniform(-1, 1) * cfg.initial_log_aspect
                  + rng.uniform(*cfg.aspect_amplitude) * _oscillation(rng, t, cfg.motion_period, 1))
    w = np.minimum(base * np.exp(log_scale + log_aspect / 2), cfg.max_object_fraction * width)
    h = np.minimum(base * np.exp(log_scale - log_aspect / 2), cfg.max_object_fraction * height)
    return w, h


def _wander(rng: np.random.Generator, t: np.ndarray, w: np.ndarray, h: np.ndarray, width: int, height: int,
            cfg: SynthTrackConfig) -> tuple[np.ndarray, np.ndarray]:
    """A smooth centre path over the frame (before clipping)."""
    cx = width / 2 + rng.uniform(*cfg.motion_amplitude) * width * _oscillation(rng, t, cfg.motion_period)
    cy = height / 2 + rng.uniform(*cfg.motion_amplitude) * height * _oscillation(rng, t, cfg.motion_period)
    return cx, cy


def _distractor(rng: np.random.Generator, t: np.ndarray, look: Look, base: float, w: np.ndarray, h: np.ndarray,
                anchor: tuple[np.ndarray, np.ndarray], width: int, height: int, calm: int,
                cfg: SynthTrackConfig) -> Actor:
    """Same shape and (usually) pattern as the target, hue shifted; orbits or roams; in front or behind."""
    res = cfg.sprite_resolution
    shift = rng.uniform(*cfg.distractor_hue_shift) / 2 * rng.choice([-1.0, 1.0])  # OpenCV hue = degrees / 2
    palette = look.palette.copy()
    palette[:, 0] = (palette[:, 0] + shift) % 180
    new_pattern = rng.random() < cfg.distractor_new_pattern_prob
    pattern = draw_pattern(rng, res, str(rng.choice(PATTERNS))) if new_pattern else look.pattern
    scale = rng.uniform(*cfg.distractor_size) * np.exp(
        rng.uniform(*cfg.scale_amplitude) * _oscillation(rng, t, cfg.motion_period, 1))
    dw, dh = w * scale, h * scale
    if rng.random() < cfg.distractor_orbit_prob:
        # Lissajous orbit: starts beside the target (cos 0 = 1), crosses it whenever both terms are small.
        radius = rng.uniform(*cfg.distractor_orbit) * base
        sign = rng.choice([-1.0, 1.0])
        period_x, period_y = rng.uniform(*cfg.orbit_period, size=2)
        dx = anchor[0] + sign * radius * np.cos(2 * math.pi * t / period_x)
        dy = anchor[1] + radius * np.sin(2 * math.pi * t / period_y + rng.uniform(0, 2 * math.pi))
    else:
        dx, dy = _wander(rng, t, dw, dh, width, height, cfg)
    dx, dy = np.clip(dx, dw / 2, width - dw / 2), np.clip(dy, dh / 2, height - dh / 2)
    front = rng.random() < cfg.distractor_front_prob
    depth = np.where((t >= calm) & front, 1.0, -1.0) * rng.uniform(0.5, 1.0)  # never over the first frames
    return Actor(mix_colours(pattern, hsv_colours(palette)), shape_mask(look.shape, res),
                  _integer_boxes(dx, dy, dw, dh, cfg.min_object_px), depth, np.ones(len(t), bool))


def _occluder(rng: np.random.Generator, t: np.ndarray, cx: np.ndarray, cy: np.ndarray, w: np.ndarray,
              h: np.ndarray, calm: int, cfg: SynthTrackConfig) -> Actor | None:
    """A dull textured panel sliding across the target for a spell; a large one hides it completely mid-way."""
    length = len(t)
    room = length - calm
    if room < 4:
        return None
    dur = int(min(rng.integers(cfg.occlusion_duration[0], cfg.occlusion_duration[1] + 1), room))
    t0 = int(rng.integers(calm, length - dur + 1))
    span = slice(t0, t0 + dur)
    size = cfg.full_occluder_size if rng.random() < cfg.full_occlusion_prob else cfg.partial_occluder_size
    ow, oh = rng.uniform(*size, 2) * (w[t0], h[t0])
    angle = rng.uniform(0, 2 * math.pi)
    reach = ((ow + w[t0]) / 2 * math.cos(angle), (oh + h[t0]) / 2 * math.sin(angle))  # touching at both ends
    progress = np.linspace(-1.0, 1.0, dur)
    ox, oy = np.zeros(length), np.zeros(length)
    ox[span] = cx[span] + progress * reach[0]
    oy[span] = cy[span] + progress * reach[1]
    active = np.zeros(length, bool)
    active[span] = True
    texture = mix_colours(draw_pattern(rng, cfg.sprite_resolution, str(rng.choice(PATTERNS))), hsv_colours(random_palette(rng)))
    texture *= rng.uniform(*cfg.occluder_dimming)
    mask = shape_mask(str(rng.choice(OCCLUDER_SHAPES)), cfg.sprite_resolution)
    boxes = _integer_boxes(ox, oy, np.full(length, ow), np.full(length, oh), cfg.min_object_px)
    return Actor(texture, mask, boxes, np.full(length, 2.0), active)


def _camera_and_light(rng: np.random.Generator, t: np.ndarray, width: int, height: int, calm: int,
                      cfg: SynthTrackConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background window offsets (L, 2) int, global gain (L,), rotating light gradient (L, 3)."""
    length = len(t)
    pan = (cfg.camera_pan * width, cfg.camera_pan * height)
    camera = np.stack([pan[0] * (1 + _oscillation(rng, t, cfg.motion_period)),
                       pan[1] * (1 + _oscillation(rng, t, cfg.motion_period))], -1)
    gain = 1 + rng.uniform(0, cfg.illumination_amplitude) * _oscillation(rng, t, cfg.motion_period)
    if rng.random() < cfg.light_switch_prob and length > calm + 1:
        gain[int(rng.integers(calm, length)):] *= rng.uniform(*cfg.light_switch_gain)
    angle = rng.uniform(0, 2 * math.pi) + t * 2 * math.pi / rng.uniform(*cfg.motion_period)
    strength = np.full(length, rng.uniform(0, cfg.illumination_gradient))
    return np.floor(camera + 0.5).astype(np.int64), gain, np.stack([strength, np.cos(angle), np.sin(angle)], -1)


def _push_out_of_view(rng: np.random.Generator, cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray,
                      width: int, height: int, calm: int, cfg: SynthTrackConfig) -> None:
    """Move the target out through its nearest border for a spell, then back (in place)."""
    length = len(cx)
    dur = int(rng.integers(cfg.out_of_view_duration[0], cfg.out_of_view_duration[1] + 1))
    if length - calm <= dur + 1:
        return
    t0 = int(rng.integers(calm, length - dur))
    ramp = max(2, dur // 4)
    envelope = np.clip(np.minimum(np.arange(dur) + 1, dur - np.arange(dur)) / ramp, 0, 1)
    span = slice(t0, t0 + dur)
    exits = np.array([cx[t0], width - cx[t0], cy[t0], height - cy[t0]])  # left, right, top, bottom
    side = int(np.argmin(exits))
    if side < 2:
        need = np.where(side == 0, cx[span], width - cx[span]) + w[span]
        cx[span] += (-1 if side == 0 else 1) * envelope * need
    else:
        need = np.where(side == 2, cy[span], height - cy[span]) + h[span]
        cy[span] += (-1 if side == 2 else 1) * envelope * need
