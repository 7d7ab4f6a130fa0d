"""SynthTrack's knobs: object classes and their shapes, patterns, and the per-sequence difficulty ranges."""

from __future__ import annotations

from dataclasses import dataclass

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
