"""The crop contract shared by training and tracking: square windows, their pixels and padding masks,
and the frame <-> crop box mapping (spec tracking_ecosystem §3.3-3.4, §6).

A training crop and a test-time crop of the same box are the same pixels, and a box predicted in a
crop maps back with the counterpart of the training GT mapping, because both sides call these
functions. The upstream quirks are kept on purpose for parity: half-to-even rounding of the crop
origin, the ``+1`` right/bottom pad, the ``(S - 1) / 2`` crop centre of the training GT mapping and
the ``crop/2`` centre of the test-time map-back, the pixel-index horizontal flip.

The crop is split in two: ``crop_window`` is the geometry (window, pads) computed from the box and
the frame size alone, ``crop_pixels`` fetches the pixels (optionally from a frame decoded at a
reduced scale). That lets the training pipeline plan every crop before decoding anything;
``crop_square`` does both at once (the tracker's crop).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch
from torch import Tensor

from trackers.errors import InvalidSample


@dataclass(frozen=True)
class CropResult:
    """A square crop resized to (S, S).

    image:         (S, S, 3) uint8.
    pad_mask:      (S, S) bool, True where the crop left the image (zero padding).
    resize_factor: S / crop_size (output pixels per frame pixel).
    crop_size:     side of the square window in frame pixels.
    """

    image: np.ndarray
    pad_mask: np.ndarray
    resize_factor: float
    crop_size: int


@dataclass(frozen=True)
class CropWindow:
    """A square window of a frame (spec §3.3 steps 1-3): origin, side, and the pads where it leaves the image.

    ``right``/``bottom`` include the upstream ``+1``: a window reaching the last column/row loses it to padding.
    """

    x1: int
    y1: int
    size: int
    left: int
    top: int
    right: int
    bottom: int

    @property
    def inside_image(self) -> bool:
        return not (self.left or self.top or self.right or self.bottom)

    @property
    def misses_image(self) -> bool:
        return self.top + self.bottom >= self.size or self.left + self.right >= self.size

    def mirrored(self, frame_width: int) -> CropWindow:
        """The same pixels seen in the horizontally mirrored frame (pads swap sides)."""
        return replace(self, x1=frame_width - self.x1 - self.size, left=self.right, right=self.left)


def crop_window(box_xywh: Sequence[float] | np.ndarray, factor: float, width: int, height: int) -> CropWindow:
    """Window of side ceil(sqrt(w*h)*factor) centred on the box in a ``width`` x ``height`` frame."""
    x, y, w, h = (float(v) for v in box_xywh)
    side = math.sqrt(w * h) * factor if w > 0 and h > 0 else float("nan")
    if not math.isfinite(side) or math.ceil(side) < 1:
        raise InvalidSample(f"cannot crop around box {list(box_xywh)}: crop size < 1 px")
    crop_sz = math.ceil(side)
    x1 = round(x + 0.5 * w - 0.5 * crop_sz)  # Python round: half to even, as upstream
    y1 = round(y + 0.5 * h - 0.5 * crop_sz)
    return CropWindow(x1, y1, crop_sz, left=max(0, -x1), top=max(0, -y1),
                      right=max(0, x1 + crop_sz - width + 1), bottom=max(0, y1 + crop_sz - height + 1))


def pad_mask(window: CropWindow, output_size: int) -> np.ndarray:
    """(S, S) bool padding mask after the bilinear resize, computed separably (rows x columns).

    Equals resizing the 2-D float mask and keeping its non-zero pixels (spec §3.3 step 6).
    """
    if window.inside_image:
        return np.zeros((output_size, output_size), bool)
    rows = _pad_profile(window.size, window.top, window.bottom, output_size)
    cols = _pad_profile(window.size, window.left, window.right, output_size)
    return rows[:, None] | cols[None, :]


def _pad_profile(crop_sz: int, before: int, after: int, output_size: int) -> np.ndarray:
    """1-D padding indicator of one axis after the bilinear resize (non-zero -> padding)."""
    profile = np.zeros((crop_sz, 1), np.float32)
    profile[: min(before, crop_sz)] = 1.0
    if after:
        profile[max(crop_sz - after, 0) :] = 1.0
    resized = cv2.resize(profile, (1, output_size), interpolation=cv2.INTER_LINEAR)
    return resized[:, 0] != 0


def crop_pixels(image: np.ndarray, window: CropWindow, output_size: int, reduction: int = 1) -> np.ndarray:
    """(S, S, C) uint8 crop of ``window`` from ``image``, zero-padded where the window leaves the frame.

    ``reduction`` > 1 means ``image`` was decoded at 1/reduction scale: the window (in full-resolution
    pixels) is then sampled from it with one affine warp, which only reads the in-image part.
    At full resolution only the in-image part is copied and only the missing border padded; one
    bilinear resize (the exact pixels of spec §3.3).
    """
    if window.misses_image:
        return np.zeros((output_size, output_size, image.shape[2]), np.uint8)
    a_x, b_x = window.x1 + window.left, window.x1 + window.size - window.right  # in-image columns [a, b)
    a_y, b_y = window.y1 + window.top, window.y1 + window.size - window.bottom
    if reduction == 1:
        inside = image[a_y:b_y, a_x:b_x]
        if not window.inside_image:
            inside = cv2.copyMakeBorder(inside, window.top, window.bottom, window.left, window.right,
                                        cv2.BORDER_CONSTANT, value=(0, 0, 0))
        return cv2.resize(inside, (output_size, output_size), interpolation=cv2.INTER_LINEAR)
    k = reduction
    c0, c1 = a_x // k, min(-(-b_x // k), image.shape[1])
    r0, r1 = a_y // k, min(-(-b_y // k), image.shape[0])
    scale = window.size / output_size  # frame pixels per output pixel
    # output pixel u -> frame x = x1 + (u + 0.5) * scale - 0.5 -> reduced x = (x + 0.5) / k - 0.5
    warp = np.array([[scale / k, 0.0, (window.x1 + 0.5 * scale) / k - 0.5 - c0],
                     [0.0, scale / k, (window.y1 + 0.5 * scale) / k - 0.5 - r0]])
    return cv2.warpAffine(image[r0:r1, c0:c1], warp, (output_size, output_size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))


def crop_square(image: np.ndarray, box_xywh: Sequence[float] | np.ndarray, factor: float,
                output_size: int) -> CropResult:
    """Square crop of side ceil(sqrt(w*h)*factor) centred on the box, zero-padded, resized to output_size."""
    window = crop_window(box_xywh, factor, image.shape[1], image.shape[0])
    return CropResult(crop_pixels(image, window, output_size), pad_mask(window, output_size),
                      output_size / window.size, window.size)


# ---------------------------------------------------------------------------------------------
# Frame <-> crop box mapping and clipping. NumPy/float in, float out: these run once per frame on
# a single box, where tensor overhead would dominate.
# ---------------------------------------------------------------------------------------------


def crop_box_to_frame(
    box_cxcywh: Tensor | np.ndarray | list[float],
    prev_box_xywh: np.ndarray | list[float],
    crop_size_px: float,
) -> np.ndarray:
    """Map a normalised crop (cx, cy, w, h) back to a frame xywh box.

    The crop was centred on ``prev_box_xywh`` with side ``crop_size_px`` (original pixels); the
    official map-back uses ``crop/2`` as the crop centre (spec tracking_ecosystem §6).
    """
    cx, cy, w, h = (float(v) * crop_size_px for v in _as_list(box_cxcywh))
    px, py, pw, ph = (float(v) for v in prev_box_xywh)
    cx_prev, cy_prev = px + 0.5 * pw, py + 0.5 * ph
    cx_img = cx + (cx_prev - 0.5 * crop_size_px)
    cy_img = cy + (cy_prev - 0.5 * crop_size_px)
    return np.array([cx_img - 0.5 * w, cy_img - 0.5 * h, w, h], dtype=np.float64)


def clip_box_xywh(box: np.ndarray | list[float], height: int, width: int, margin: float = 10.0) -> np.ndarray:
    """Clip a frame box into the image, keeping at least ``margin`` px of it (official ``clip_box``)."""
    x1, y1, w, h = (float(v) for v in box)
    x2, y2 = x1 + w, y1 + h
    x1 = min(max(0.0, x1), width - margin)
    x2 = min(max(margin, x2), float(width))
    y1 = min(max(0.0, y1), height - margin)
    y2 = min(max(margin, y2), float(height))
    return np.array([x1, y1, max(margin, x2 - x1), max(margin, y2 - y1)], dtype=np.float64)


def frame_box_to_crop(
    box_xywh: np.ndarray, crop_centre_box_xywh: np.ndarray, resize_factor: float, output_size: int
) -> np.ndarray:
    """Map a frame box into a crop made around another box (training GT mapping, spec §3.4).

    Returns the normalised crop (cx, cy, w, h). The crop centre is ``(S - 1) / 2`` as in the
    official processing.
    """
    b = np.asarray(box_xywh, dtype=np.float64)
    j = np.asarray(crop_centre_box_xywh, dtype=np.float64)
    c_b = b[..., :2] + 0.5 * b[..., 2:]
    c_j = j[..., :2] + 0.5 * j[..., 2:]
    centre = (output_size - 1) / 2 + (c_b - c_j) * resize_factor
    size = b[..., 2:] * resize_factor
    return np.concatenate([centre, size], -1) / output_size


def _as_list(b: Tensor | np.ndarray | list[float]) -> list[float]:
    if isinstance(b, Tensor):
        return b.detach().flatten().tolist()
    return list(np.asarray(b, dtype=np.float64).ravel())


# ---------------------------------------------------------------------------------------------
# Horizontal flips used by data augmentation (spec tracking_ecosystem §3.1 and §3.6). They agree
# with ``CropWindow.mirrored``: the crop of a flipped frame is the mirrored crop of the frame.
# ---------------------------------------------------------------------------------------------


def hflip_frame_box_xywh(box_xywh: np.ndarray, width: int) -> np.ndarray:
    """Mirror frame xywh boxes in an image of ``width`` px with the official pixel-index rule.

    ``x' = (W - 1) - (x + w)`` (a continuous flip would be ``W - x - w``); kept for parity with
    the official processing, which flips full frames before cropping.
    """
    b = np.array(box_xywh, dtype=np.float64, copy=True)
    b[..., 0] = (width - 1) - (b[..., 0] + b[..., 2])
    return b


def hflip_crop_box_cxcywh(box_cxcywh: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """Mirror normalised crop cxcywh boxes: ``cx' = 1 - cx`` (= ``x' = 1 - x - w`` in xywh); keeps type and dtype."""
    if isinstance(box_cxcywh, np.ndarray):
        return np.concatenate((1.0 - box_cxcywh[..., :1], box_cxcywh[..., 1:]), -1)
    return torch.cat((1.0 - box_cxcywh[..., :1], box_cxcywh[..., 1:]), -1)
