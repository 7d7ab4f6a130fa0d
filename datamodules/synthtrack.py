"""SynthTrack: a deterministic, procedurally generated tracking benchmark written in the LaSOT layout
(or, on request, the GOT-10k layout, to exercise a second reader on the same data).

No real dataset ships with the project, so this one is made on demand; because it is written to
disk as LaSOT (``<class>/<class>-<n>/img/%08d.jpg``, ``groundtruth.txt``, ``full_occlusion.txt``,
``out_of_view.txt``, ``nlp.txt``) plus ``train_split.txt`` / ``test_split.txt``, the real reader,
sampler, crops, evaluation and result writers are what run on it.

Each sequence is hard for a tracker that does not look: a textured target moves over a panning,
cluttered background with scale/aspect oscillation, large jumps (fast motion), similar-looking
distractors (same shape and pattern, shifted hue) orbiting and crossing it in front or behind,
occluders sliding over it (partial or full, full flagged), out-of-view spells (flagged, GT
``0,0,0,0``) and illumination changes. The target keeps its own colours and pattern for the whole
sequence, so a learned tracker can follow it. Every random choice comes from one numpy Generator
per sequence seeded with ``(seed, sequence index)``: the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from trackers.nn.box_ops import cxcywh_to_xyxy, xyxy_to_xywh

SPLIT_FILES = {"train": "train_split.txt", "test": "test_split.txt"}
SHAPE_OF_CLASS = {
    "ball": "ellipse",
    "crate": "rectangle",
    "kite": "diamond",
    "cone": "triangle",
    "plus": "cross",
    "gem": "hexagon",
}
DEFAULT_CLASSES: tuple[str, ...] = tuple(SHAPE_OF_CLASS)
PATTERNS = ("striped", "checkered", "dotted", "ringed", "blotchy")
OCCLUDER_SHAPES = ("rectangle", "ellipse", "hexagon")
META_FILE = "synthtrack.json"
LAYOUTS = ("lasot", "got10k")


def split_file_path(root: str | Path, split: str) -> Path:
    """The split list SynthTrack writes for ``split`` ('train' or 'test')."""
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown SynthTrack split '{split}': use one of {sorted(SPLIT_FILES)}")
    return Path(root) / SPLIT_FILES[split]


@dataclass(frozen=True)
class SynthTrackConfig:
    """Difficulty knobs. Ranges are (low, high) of a uniform draw per sequence; sizes relative to the frame."""

    sprite_resolution: int = 64  # side of the base texture/mask every object is resized from
    target_size: tuple[float, float] = (0.12, 0.22)  # base target side / min(W, H)
    min_object_px: int = 6
    max_object_fraction: float = 0.6  # an object never exceeds this fraction of the frame side
    scale_amplitude: tuple[float, float] = (0.15, 0.45)  # log-scale oscillation amplitude
    aspect_amplitude: tuple[float, float] = (0.1, 0.35)  # log-aspect oscillation amplitude
    initial_log_aspect: float = 0.4  # |log(w/h)| of the target at rest, at most
    motion_amplitude: tuple[float, float] = (0.2, 0.35)  # centre path amplitude / frame side
    motion_period: tuple[float, float] = (40.0, 160.0)  # frames per oscillation of the path
    jumps: tuple[int, int] = (1, 3)  # fast-motion jumps per sequence
    jump_size: tuple[float, float] = (0.15, 0.3)  # jump length / min(W, H)
    distractors: tuple[int, int] = (1, 3)
    distractor_size: tuple[float, float] = (0.8, 1.2)  # relative to the target
    distractor_hue_shift: tuple[float, float] = (35.0, 70.0)  # degrees, random sign
    distractor_orbit: tuple[float, float] = (1.2, 3.0)  # orbit radius in target sides
    orbit_period: tuple[float, float] = (20.0, 80.0)  # frames per orbit of a distractor, per axis
    distractor_orbit_prob: float = 0.6  # orbit the target (else roam the frame)
    distractor_front_prob: float = 0.5  # drawn over the target (else behind it)
    distractor_new_pattern_prob: float = 0.3  # also differs in pattern, not only in hue
    occlusions: tuple[int, int] = (1, 2)
    occlusion_duration: tuple[int, int] = (10, 24)  # frames an occluder slides over the target
    full_occlusion_prob: float = 0.5
    full_occluder_size: tuple[float, float] = (1.3, 1.8)  # relative to the target, per axis
    partial_occluder_size: tuple[float, float] = (0.4, 0.8)
    occluder_dimming: tuple[float, float] = (0.4, 0.9)  # occluders are duller than the actors
    full_occlusion_below: float = 0.1  # unoccluded fraction under which a frame is flagged fully occluded
    out_of_view_prob: float = 0.5
    out_of_view_duration: tuple[int, int] = (6, 16)
    out_of_view_below: float = 0.25  # in-frame fraction under which a frame is flagged out of view
    calm_start: int = 8  # first frames free of occlusion, out-of-view and front distractors
    camera_pan: float = 0.1  # background canvas margin / frame side
    illumination_amplitude: float = 0.3  # global gain oscillation, at most
    illumination_gradient: float = 0.4  # strength of a rotating light gradient, at most
    light_switch_prob: float = 0.3
    light_switch_gain: tuple[float, float] = (0.65, 1.35)
    noise_std: float = 4.0  # per-pixel Gaussian luminance noise (grey levels)
    clutter_shapes: int = 30
    clutter_size: tuple[float, float] = (0.04, 0.2)  # clutter shape side / min(W, H)
    clutter_same_shape_prob: float = 0.3  # clutter of the target's own shape (camouflage)
    clutter_dimming: tuple[float, float] = (0.5, 1.0)


def write_synthtrack(
    out: str | Path,
    num_train: int,
    num_test: int,
    length: int | tuple[int, int] = (60, 120),
    image_size: tuple[int, int] = (320, 240),
    seed: int = 0,
    classes: Sequence[str] = DEFAULT_CLASSES,
    config: SynthTrackConfig | None = None,
    jpeg_quality: int = 90,
    layout: str = "lasot",
) -> Path:
    """Write SynthTrack to ``out``; returns ``out``.

    ``length`` is a fixed frame count or an inclusive (min, max) range; ``image_size`` is (W, H).
    Sequences are assigned round-robin to ``classes``. ``layout='lasot'``: ``<class>/<class>-<k>/``
    (k from 1, train first) plus train/test split lists (reader type ``synthtrack``).
    ``layout='got10k'``: train sequences in ``train/GOT-10k_Train_<k>/``, test sequences in
    ``val/GOT-10k_Val_<k>/``, each folder with its ``list.txt`` (reader type ``got10k``, split null).
    The same seed gives the same frames and boxes in either layout.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown SynthTrack layout '{layout}': use one of {LAYOUTS}")
    cfg = config or SynthTrackConfig()
    unknown = [c for c in classes if c not in SHAPE_OF_CLASS]
    if unknown or not classes:
        raise ValueError(f"unknown SynthTrack classes {unknown}: choose from {sorted(SHAPE_OF_CLASS)}")
    lo, hi = (length, length) if isinstance(length, int) else (int(length[0]), int(length[1]))
    if lo < 2 or hi < lo:
        raise ValueError(f"SynthTrack length must be >= 2 (got {length})")
    width, height = int(image_size[0]), int(image_size[1])
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)

    names: list[str] = []
    counters = {c: 0 for c in classes}
    for index in range(num_train + num_test):
        cls = classes[index % len(classes)]
        counters[cls] += 1
        if layout == "lasot":
            name = f"{cls}-{counters[cls]}"
            seq_dir = root / cls / name
            image_dir = seq_dir / "img"
        else:
            subset, k = ("train", index + 1) if index < num_train else ("val", index - num_train + 1)
            name = f"GOT-10k_{subset.capitalize()}_{k:06d}"
            seq_dir = image_dir = root / subset / name
        names.append(name)
        rng = np.random.default_rng([seed, index])
        seq_len = int(rng.integers(lo, hi + 1))
        track = _write_frames(image_dir, rng, seq_len, width, height, cls, cfg, jpeg_quality)
        if layout == "lasot":
            _write_lasot_annotations(seq_dir, track)
        else:
            _write_got10k_annotations(seq_dir, track, cls, width, height)

    if layout == "lasot":
        split_file_path(root, "train").write_text("".join(f"{n}\n" for n in names[:num_train]))
        split_file_path(root, "test").write_text("".join(f"{n}\n" for n in names[num_train:]))
    else:
        for subset, subset_names in (("train", names[:num_train]), ("val", names[num_train:])):
            (root / subset).mkdir(parents=True, exist_ok=True)
            (root / subset / "list.txt").write_text("".join(f"{n}\n" for n in subset_names))
    meta = dict(num_train=num_train, num_test=num_test, length=[lo, hi], image_size=[width, height],
                seed=seed, classes=list(classes), jpeg_quality=jpeg_quality, config=asdict(cfg), layout=layout)
    (root / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return root


# --------------------------------------------------------------------------------------------
# Appearance: shape masks, patterns, colours, background.
# --------------------------------------------------------------------------------------------


def _shape_mask(shape: str, res: int) -> np.ndarray:
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


def _pattern(rng: np.random.Generator, res: int, kind: str) -> np.ndarray:
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


def _hsv_colours(hsv: np.ndarray) -> np.ndarray:
    """(N, 3) OpenCV HSV (H in 0..179) -> (N, 3) float32 BGR."""
    px = np.clip(np.round(hsv), 0, [179, 255, 255]).astype(np.uint8)[None]
    return cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0].astype(np.float32)


def _random_palette(rng: np.random.Generator) -> np.ndarray:
    """Two HSV colours: a saturated one and a contrasting one of a nearby hue."""
    hue = rng.uniform(0, 180)
    return np.array(
        [
            [hue, rng.uniform(170, 255), rng.uniform(170, 255)],
            [(hue + rng.uniform(-15, 15)) % 180, rng.uniform(120, 255), rng.uniform(30, 110)],
        ]
    )


def _mix(pattern: np.ndarray, bgr: np.ndarray) -> np.ndarray:
    return bgr[0] * (1 - pattern[..., None]) + bgr[1] * pattern[..., None]


def _colour_name(hue: float) -> str:
    bounds = [(8, "red"), (20, "orange"), (33, "yellow"), (78, "green"), (95, "cyan"), (130, "blue"),
              (150, "purple"), (170, "pink"), (180, "red")]
    return next(name for bound, name in bounds if hue < bound)


def _background(rng: np.random.Generator, h: int, w: int, shape: str, cfg: SynthTrackConfig) -> np.ndarray:
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
        tex = _mix(_pattern(rng, res, str(rng.choice(PATTERNS))), _hsv_colours(_random_palette(rng)))
        tex *= rng.uniform(*cfg.clutter_dimming)
        mask = _shape_mask(kind, res)
        _composite(canvas, cv2.resize(tex, (cw, ch)), cv2.resize(mask, (cw, ch)), x1, y1)
    return canvas.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Motion: paths, sizes and integer boxes.
# --------------------------------------------------------------------------------------------


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
    xyxy = cxcywh_to_xyxy(torch.from_numpy(np.stack([cx, cy, wi, hi], -1))).numpy()
    return np.floor(xyxy + 0.5).astype(np.int64)


@dataclass
class _Actor:
    """A drawn object: its sprite, per-frame boxes (xyxy int), activity and depth (target = 0)."""

    texture: np.ndarray
    mask: np.ndarray
    boxes: np.ndarray
    depth: np.ndarray
    active: np.ndarray


@dataclass
class _Plan:
    actors: list[_Actor]  # actors[0] is the target
    camera: np.ndarray  # (L, 2) int background window offsets
    gain: np.ndarray  # (L,) global illumination gain
    gradient: np.ndarray  # (L, 3) light gradient (strength, cos, sin)
    description: str


@dataclass(frozen=True)
class _Look:
    """The target's appearance, which distractors imitate."""

    shape: str
    pattern_kind: str
    pattern: np.ndarray
    palette: np.ndarray  # (2, 3) HSV


def _plan_sequence(rng: np.random.Generator, length: int, width: int, height: int, cls: str,
                   cfg: SynthTrackConfig) -> _Plan:
    t = np.arange(length, dtype=np.float64)
    calm = min(cfg.calm_start, length - 1)
    kind = str(rng.choice(PATTERNS))
    look = _Look(SHAPE_OF_CLASS[cls], kind, _pattern(rng, cfg.sprite_resolution, kind), _random_palette(rng))

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
    target = _Actor(_mix(look.pattern, _hsv_colours(look.palette)), _shape_mask(look.shape, cfg.sprite_resolution),
                    _integer_boxes(cx, cy, w, h, cfg.min_object_px), np.zeros(length), always)
    actors = [target]
    for _ in range(int(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1))):
        actors.append(_distractor(rng, t, look, base, w, h, anchor, width, height, calm, cfg))
    for _ in range(int(rng.integers(cfg.occlusions[0], cfg.occlusions[1] + 1))):
        occluder = _occluder(rng, t, cx, cy, w, h, calm, cfg)
        if occluder is not None:
            actors.append(occluder)

    camera, gain, gradient = _camera_and_light(rng, t, width, height, calm, cfg)
    description = f"{_colour_name(float(look.palette[0, 0]))} {kind} {cls} moving among similar {cls}s\n"
    return _Plan(actors, camera, gain, gradient, description)


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


def _distractor(rng: np.random.Generator, t: np.ndarray, look: _Look, base: float, w: np.ndarray, h: np.ndarray,
                anchor: tuple[np.ndarray, np.ndarray], width: int, height: int, calm: int,
                cfg: SynthTrackConfig) -> _Actor:
    """Same shape and (usually) pattern as the target, hue shifted; orbits or roams; in front or behind."""
    res = cfg.sprite_resolution
    shift = rng.uniform(*cfg.distractor_hue_shift) / 2 * rng.choice([-1.0, 1.0])  # OpenCV hue = degrees / 2
    palette = look.palette.copy()
    palette[:, 0] = (palette[:, 0] + shift) % 180
    new_pattern = rng.random() < cfg.distractor_new_pattern_prob
    pattern = _pattern(rng, res, str(rng.choice(PATTERNS))) if new_pattern else look.pattern
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
    return _Actor(_mix(pattern, _hsv_colours(palette)), _shape_mask(look.shape, res),
                  _integer_boxes(dx, dy, dw, dh, cfg.min_object_px), depth, np.ones(len(t), bool))


def _occluder(rng: np.random.Generator, t: np.ndarray, cx: np.ndarray, cy: np.ndarray, w: np.ndarray,
              h: np.ndarray, calm: int, cfg: SynthTrackConfig) -> _Actor | None:
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
    texture = _mix(_pattern(rng, cfg.sprite_resolution, str(rng.choice(PATTERNS))), _hsv_colours(_random_palette(rng)))
    texture *= rng.uniform(*cfg.occluder_dimming)
    mask = _shape_mask(str(rng.choice(OCCLUDER_SHAPES)), cfg.sprite_resolution)
    boxes = _integer_boxes(ox, oy, np.full(length, ow), np.full(length, oh), cfg.min_object_px)
    return _Actor(texture, mask, boxes, np.full(length, 2.0), active)


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


# --------------------------------------------------------------------------------------------
# Rendering.
# --------------------------------------------------------------------------------------------


def _overlap(box: np.ndarray, width: int, height: int) -> tuple[slice, slice, slice, slice] | None:
    """Slices (canvas rows, canvas cols, sprite rows, sprite cols) of an xyxy box inside a canvas."""
    x1, y1, x2, y2 = (int(v) for v in box)
    fx1, fy1, fx2, fy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if fx2 <= fx1 or fy2 <= fy1:
        return None
    return slice(fy1, fy2), slice(fx1, fx2), slice(fy1 - y1, fy2 - y1), slice(fx1 - x1, fx2 - x1)


def _composite(canvas: np.ndarray, texture: np.ndarray, alpha: np.ndarray, x1: int, y1: int) -> None:
    """Alpha-blend a sprite whose top-left is (x1, y1) onto the canvas, clipped to it (in place)."""
    h, w = alpha.shape
    ov = _overlap(np.array([x1, y1, x1 + w, y1 + h]), canvas.shape[1], canvas.shape[0])
    if ov is None:
        return
    rows, cols, srows, scols = ov
    a = alpha[srows, scols, None]
    region = canvas[rows, cols]
    region *= 1 - a
    region += texture[srows, scols] * a


@dataclass
class _Track:
    """Per-frame ground truth of one written sequence, before it is stored in a layout's files."""

    boxes: np.ndarray  # (L, 4) int frame xywh (0,0,0,0 when out of view)
    occluded: np.ndarray  # (L,) int 0/1, fully occluded
    out_of_view: np.ndarray  # (L,) int 0/1
    cover: np.ndarray  # (L,) int 0..8, visible eighths (GOT-10k's cover.label)
    cut_by_image: np.ndarray  # (L,) int 0/1, partly outside the frame
    description: str


def _write_frames(image_dir: Path, rng: np.random.Generator, length: int, width: int, height: int, cls: str,
                  cfg: SynthTrackConfig, quality: int) -> _Track:
    """Render and write ``%08d.jpg`` frames (1-based) to ``image_dir``; return their ground truth."""
    plan = _plan_sequence(rng, length, width, height, cls, cfg)
    pan_w, pan_h = int(plan.camera[:, 0].max()), int(plan.camera[:, 1].max())
    background = _background(rng, height + pan_h + 1, width + pan_w + 1, SHAPE_OF_CLASS[cls], cfg)
    ys = (np.arange(height, dtype=np.float32)[:, None] / height - 0.5)
    xs = (np.arange(width, dtype=np.float32)[None, :] / width - 0.5)
    target = plan.actors[0]
    gt = np.zeros((length, 4), np.int64)
    occluded = np.zeros(length, np.int64)
    out_of_view = np.zeros(length, np.int64)
    cover = np.zeros(length, np.int64)
    cut = np.zeros(length, np.int64)

    image_dir.mkdir(parents=True, exist_ok=True)
    for k in range(length):
        ox, oy = plan.camera[k]
        frame = background[oy : oy + height, ox : ox + width].copy()
        target_alpha = np.zeros(0, np.float32)
        unhidden = target_alpha
        for actor in sorted((a for a in plan.actors if a.active[k]), key=lambda a: a.depth[k]):
            x1, y1, x2, y2 = actor.boxes[k]
            tex = cv2.resize(actor.texture, (int(x2 - x1), int(y2 - y1)))
            alpha = cv2.resize(actor.mask, (int(x2 - x1), int(y2 - y1)))
            _composite(frame, tex, alpha, int(x1), int(y1))
            if actor is target:
                target_alpha, unhidden = alpha, alpha.copy()
            elif unhidden.size:
                _hide(unhidden, target.boxes[k], alpha, actor.boxes[k])
        in_frame_fraction, unhidden_fraction = _visibility(target_alpha, unhidden, target.boxes[k], width, height)
        out_of_view[k] = in_frame_fraction < cfg.out_of_view_below
        occluded[k] = (not out_of_view[k]) and unhidden_fraction < cfg.full_occlusion_below
        if not out_of_view[k]:
            clipped = np.clip(target.boxes[k], 0, [width, height, width, height])
            gt[k] = xyxy_to_xywh(torch.from_numpy(clipped)).numpy()
            cut[k] = in_frame_fraction < 1.0
        if not (out_of_view[k] or occluded[k]):
            cover[k] = min(8, max(1, round(8 * in_frame_fraction * unhidden_fraction)))

        strength, cos_a, sin_a = plan.gradient[k]
        light = (plan.gain[k] * strength) * (xs * cos_a + ys * sin_a) + plan.gain[k]
        noise = rng.standard_normal((height, width, 1), dtype=np.float32) * cfg.noise_std + 0.5
        frame *= light[..., None]
        frame += noise
        image = np.clip(frame, 0, 255, out=frame).astype(np.uint8)
        cv2.imwrite(str(image_dir / f"{k + 1:08d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return _Track(gt, occluded, out_of_view, cover, cut, plan.description)


def _write_lasot_annotations(seq_dir: Path, track: _Track) -> None:
    (seq_dir / "groundtruth.txt").write_text("".join(f"{x},{y},{w},{h}\n" for x, y, w, h in track.boxes))
    (seq_dir / "full_occlusion.txt").write_text(",".join(map(str, track.occluded)) + "\n")
    (seq_dir / "out_of_view.txt").write_text(",".join(map(str, track.out_of_view)) + "\n")
    (seq_dir / "nlp.txt").write_text(track.description)


def _write_got10k_annotations(seq_dir: Path, track: _Track, cls: str, width: int, height: int) -> None:
    """GOT-10k files (spec §1.2): absence = out of view; cover 0 when fully occluded or absent."""
    (seq_dir / "groundtruth.txt").write_text("".join(f"{x},{y},{w},{h}\n" for x, y, w, h in track.boxes))
    for name, values in (("absence", track.out_of_view), ("cover", track.cover), ("cut_by_image", track.cut_by_image)):
        (seq_dir / f"{name}.label").write_text("".join(f"{v}\n" for v in values))
    meta = {"url": "synthtrack", "begin": "00:00:00", "end": "00:00:00", "anno_fps": "10Hz", "object_class": cls,
            "motion_class": "synthetic", "major_class": "synthetic", "root_class": "object",
            "motion_adverb": "synthetic", "resolution": f"({width}, {height})"}
    (seq_dir / "meta_info.ini").write_text("[METAINFO]\n" + "".join(f"{k}: {v}\n" for k, v in meta.items()))


def _hide(unhidden: np.ndarray, target_box: np.ndarray, alpha: np.ndarray, box: np.ndarray) -> None:
    """Attenuate the target's unhidden alpha where a later-drawn sprite covers it (in place)."""
    tx1, ty1 = int(target_box[0]), int(target_box[1])
    shifted = np.array([box[0] - tx1, box[1] - ty1, box[2] - tx1, box[3] - ty1])
    ov = _overlap(shifted, unhidden.shape[1], unhidden.shape[0])
    if ov is not None:
        rows, cols, srows, scols = ov
        unhidden[rows, cols] *= 1 - alpha[srows, scols]


def _visibility(alpha: np.ndarray, unhidden: np.ndarray, box: np.ndarray, width: int,
                height: int) -> tuple[float, float]:
    """(fraction of the target inside the frame, fraction of its in-frame part not covered by others)."""
    total = float(alpha.sum())
    ov = _overlap(box, width, height)
    if ov is None or total <= 0:
        return 0.0, 0.0
    _, _, srows, scols = ov
    inside = float(alpha[srows, scols].sum())
    return inside / total, float(unhidden[srows, scols].sum()) / max(inside, 1e-6)
