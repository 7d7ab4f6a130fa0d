"""SynthTrack rendering: draw the planned actors frame by frame, account for what hides the target, write the
JPEG frames and return the per-frame ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from datamodules.readers.lasot import FRAME_FILE
from datamodules.synthtrack.appearance import draw_background
from datamodules.synthtrack.canvas import composite, overlap
from datamodules.synthtrack.config import SHAPE_OF_CLASS, SynthTrackConfig
from datamodules.synthtrack.motion import plan_sequence
from trackers.nn.box_ops import xyxy_to_xywh_np


@dataclass
class Track:
    """Per-frame ground truth of one written sequence, before it is stored in a layout's files."""

    boxes: np.ndarray  # (L, 4) int frame xywh (0,0,0,0 when out of view)
    occluded: np.ndarray  # (L,) int 0/1, fully occluded
    out_of_view: np.ndarray  # (L,) int 0/1
    cover: np.ndarray  # (L,) int 0..8, visible eighths (GOT-10k's cover.label)
    cut_by_image: np.ndarray  # (L,) int 0/1, partly outside the frame
    description: str


def write_frames(image_dir: Path, rng: np.random.Generator, length: int, width: int, height: int, cls: str,
                  cfg: SynthTrackConfig, quality: int) -> Track:
    """Render and write the frames (``FRAME_FILE``, 1-based) to ``image_dir``; return their ground truth."""
    plan = plan_sequence(rng, length, width, height, cls, cfg)
    pan_w, pan_h = int(plan.camera[:, 0].max()), int(plan.camera[:, 1].max())
    background = draw_background(rng, height + pan_h + 1, width + pan_w + 1, SHAPE_OF_CLASS[cls], cfg)
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
            composite(frame, tex, alpha, int(x1), int(y1))
            if actor is target:
                target_alpha, unhidden = alpha, alpha.copy()
            elif unhidden.size:
                _hide(unhidden, target.boxes[k], alpha, actor.boxes[k])
        in_frame_fraction, unhidden_fraction = _visibility(target_alpha, unhidden, target.boxes[k], width, height)
        out_of_view[k] = in_frame_fraction < cfg.out_of_view_below
        occluded[k] = (not out_of_view[k]) and unhidden_fraction < cfg.full_occlusion_below
        if not out_of_view[k]:
            clipped = np.clip(target.boxes[k], 0, [width, height, width, height])
            gt[k] = xyxy_to_xywh_np(clipped)
            cut[k] = in_frame_fraction < 1.0
        if not (out_of_view[k] or occluded[k]):
            cover[k] = min(8, max(1, round(8 * in_frame_fraction * unhidden_fraction)))

        strength, cos_a, sin_a = plan.gradient[k]
        light = (plan.gain[k] * strength) * (xs * cos_a + ys * sin_a) + plan.gain[k]
        noise = rng.standard_normal((height, width, 1), dtype=np.float32) * cfg.noise_std + 0.5
        frame *= light[..., None]
        frame += noise
        image = np.clip(frame, 0, 255, out=frame).astype(np.uint8)
        cv2.imwrite(str(image_dir / FRAME_FILE.format(k + 1)), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return Track(gt, occluded, out_of_view, cover, cut, plan.description)


def _hide(unhidden: np.ndarray, target_box: np.ndarray, alpha: np.ndarray, box: np.ndarray) -> None:
    """Attenuate the target's unhidden alpha where a later-drawn sprite covers it (in place)."""
    tx1, ty1 = int(target_box[0]), int(target_box[1])
    shifted = np.array([box[0] - tx1, box[1] - ty1, box[2] - tx1, box[3] - ty1])
    ov = overlap(shifted, unhidden.shape[1], unhidden.shape[0])
    if ov is not None:
        rows, cols, srows, scols = ov
        unhidden[rows, cols] *= 1 - alpha[srows, scols]


def _visibility(alpha: np.ndarray, unhidden: np.ndarray, box: np.ndarray, width: int,
                height: int) -> tuple[float, float]:
    """(fraction of the target inside the frame, fraction of its in-frame part not covered by others)."""
    total = float(alpha.sum())
    ov = overlap(box, width, height)
    if ov is None or total <= 0:
        return 0.0, 0.0
    _, _, srows, scols = ov
    inside = float(alpha[srows, scols].sum())
    return inside / total, float(unhidden[srows, scols].sum()) / max(inside, 1e-6)
