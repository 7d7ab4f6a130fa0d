"""Crop, jitter, GT mapping and validity of training pairs (spec tracking_ecosystem §3.2-3.5).

``crop_square`` and ``normalize_image`` are also what the test-time tracker uses (spec §6), so a
training crop and an inference crop of the same box are the same pixels. The upstream quirks are
kept on purpose for parity: half-to-even rounding of the crop origin, the ``+1`` right/bottom pad,
the ``(S - 1) / 2`` crop centre of the GT mapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

from datamodules.sampler import RawPair, SampleRejected
from trackers.nn.box_ops import frame_box_to_crop

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InvalidSample(SampleRejected, ValueError):
    """A drawn sample cannot be used (degenerate box, crop entirely padding); the caller redraws."""


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
class CropSettings:
    """One crop kind (template or search): output side, context factor, and jitter of spec §3.2."""

    size: int
    factor: float
    center_jitter: float = 0.0
    scale_jitter: float = 0.0


def crop_square(image: np.ndarray, box_xywh: Sequence[float] | np.ndarray, factor: float,
                output_size: int) -> CropResult:
    """Square crop of side ceil(sqrt(w*h)*factor) centred on the box, zero-padded, resized to output_size.

    Only the in-image window is copied and only the missing border is padded (never the full
    frame); one bilinear resize. The padding mask is computed separably (rows x columns), which
    equals resizing the 2-D float mask and keeping its non-zero pixels.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    side = math.sqrt(w * h) * factor if w > 0 and h > 0 else float("nan")
    if not math.isfinite(side) or math.ceil(side) < 1:
        raise InvalidSample(f"cannot crop around box {list(box_xywh)}: crop size < 1 px")
    crop_sz = math.ceil(side)
    height, width = image.shape[:2]
    x1 = round(x + 0.5 * w - 0.5 * crop_sz)  # Python round: half to even, as upstream
    y1 = round(y + 0.5 * h - 0.5 * crop_sz)
    x2, y2 = x1 + crop_sz, y1 + crop_sz
    left, top = max(0, -x1), max(0, -y1)
    right, bottom = max(0, x2 - width + 1), max(0, y2 - height + 1)  # the upstream +1 drops the last row/col
    rows = _pad_profile(crop_sz, top, bottom, output_size)
    cols = _pad_profile(crop_sz, left, right, output_size)
    pad_mask = rows[:, None] | cols[None, :]
    resize_factor = output_size / crop_sz

    if top + bottom >= crop_sz or left + right >= crop_sz:  # the window misses the image entirely
        blank = np.zeros((output_size, output_size, 3), np.uint8)
        return CropResult(blank, np.ones_like(pad_mask), resize_factor, crop_sz)
    window = image[y1 + top : y2 - bottom, x1 + left : x2 - right]
    if top or bottom or left or right:
        window = cv2.copyMakeBorder(window, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    resized = cv2.resize(window, (output_size, output_size), interpolation=cv2.INTER_LINEAR)
    return CropResult(resized, pad_mask, resize_factor, crop_sz)


def _pad_profile(crop_sz: int, before: int, after: int, output_size: int) -> np.ndarray:
    """1-D padding indicator of one axis after the bilinear resize (non-zero -> padding)."""
    profile = np.zeros((crop_sz, 1), np.float32)
    profile[: min(before, crop_sz)] = 1.0
    if after:
        profile[max(crop_sz - after, 0) :] = 1.0
    resized = cv2.resize(profile, (1, output_size), interpolation=cv2.INTER_LINEAR)
    return resized[:, 0] != 0


def normalize_image(image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    brightness: float = 1.0) -> Tensor:
    """ImageNet-normalised float32 (3, S, S) tensor of an RGB uint8 (S, S, 3) image.

    ``brightness`` first multiplies the [0, 1] image and clamps it (the training brightness
    jitter). Each output value depends only on (channel, uint8 value), so one 256-entry table per
    channel gives the float pipeline's exact values at a fraction of its cost.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise TypeError(f"normalize_image expects an RGB uint8 (H, W, 3) array, got {image.dtype} {image.shape}")
    levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
    if brightness != 1.0:
        levels = np.clip(levels * np.float32(brightness), 0.0, 1.0)
    m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    table = ((levels[:, None] - m) / s)[None]  # (1, 256, 3)
    values = cv2.LUT(np.ascontiguousarray(image), np.ascontiguousarray(table, dtype=np.float32))
    return torch.from_numpy(np.ascontiguousarray(values.transpose(2, 0, 1)))


def jitter_box(box_xywh: np.ndarray, center_jitter: float, scale_jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Random crop box around the GT (spec §3.2): log-normal size, uniform centre offset in ±sqrt(w'h')·k/2."""
    box = np.asarray(box_xywh, dtype=np.float64)
    if center_jitter == 0 and scale_jitter == 0:
        return box.copy()
    size = box[2:] * np.exp(rng.standard_normal(2) * scale_jitter)
    max_offset = math.sqrt(float(size[0] * size[1])) * center_jitter
    centre = box[:2] + 0.5 * box[2:] + max_offset * (rng.random(2) - 0.5)
    return np.concatenate([centre - 0.5 * size, size])


def crop_is_valid(pad_mask: np.ndarray, mask_stride: int) -> bool:
    """Spec §3.5: reject crops that are all padding, also at the feature resolution (nearest, S // stride)."""
    if pad_mask.all():
        return False
    size = pad_mask.shape[0]
    cells = max(1, size // mask_stride)
    idx = np.floor(np.arange(cells) * (size / cells)).astype(np.int64)  # torch 'nearest' sampling
    return not pad_mask[np.ix_(idx, idx)].all()


@dataclass(frozen=True)
class ProcessedCrop:
    """A jittered crop with the GT box mapped into it (normalised cxcywh)."""

    image: np.ndarray
    pad_mask: np.ndarray
    box: np.ndarray


def process_crop(frame: np.ndarray, box_xywh: np.ndarray, settings: CropSettings, rng: np.random.Generator,
                 mask_stride: int) -> ProcessedCrop:
    """Jitter, crop, map the GT and check validity for one frame; raises InvalidSample to request a redraw."""
    jittered = jitter_box(box_xywh, settings.center_jitter, settings.scale_jitter, rng)
    crop = crop_square(frame, jittered, settings.factor, settings.size)
    if not crop_is_valid(crop.pad_mask, mask_stride):
        raise InvalidSample("crop lies entirely in the padding")
    box = frame_box_to_crop(box_xywh, jittered, crop.resize_factor, settings.size)
    return ProcessedCrop(crop.image, crop.pad_mask, box)


JointTransform = Callable[[Sequence[np.ndarray], np.ndarray, np.random.Generator], tuple[list[np.ndarray], np.ndarray]]
CropTransform = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator], tuple[Tensor, Tensor, Tensor]]


class PairProcessor:
    """RawPair -> one training sample (the per-sample part of a ``TrackingBatch``).

    Order as upstream: joint full-frame transform, then per frame jitter + crop + GT mapping +
    validity, then the per-crop transform (which also normalises). The transforms are passed in
    (see ``datamodules.augmentation``) so validation can use joint-only augmentation.
    """

    def __init__(self, template: CropSettings, search: CropSettings, joint: JointTransform,
                 per_crop: CropTransform, mask_stride: int = 16) -> None:
        self.template, self.search = template, search
        self.joint, self.per_crop, self.mask_stride = joint, per_crop, mask_stride

    def __call__(self, pair: RawPair, rng: np.random.Generator) -> dict:
        if len(pair.search_frames) != 1:
            raise ValueError(f"PairProcessor makes one search crop per sample, got {len(pair.search_frames)}")
        n_t = len(pair.template_frames)
        frames, boxes = self.joint(pair.template_frames + pair.search_frames,
                                   np.concatenate([pair.template_boxes, pair.search_boxes]), rng)
        settings = [self.template] * n_t + [self.search]
        crops = [process_crop(f, b, s, rng, self.mask_stride) for f, b, s in zip(frames, boxes, settings, strict=True)]
        images, masks, crop_boxes = zip(*(self.per_crop(c.image, c.pad_mask, c.box, rng) for c in crops), strict=True)
        return {
            "template": torch.stack(images[:n_t]),
            "template_box": torch.stack(crop_boxes[:n_t]),
            "template_mask": torch.stack(masks[:n_t]),
            "search": images[n_t],
            "search_box": crop_boxes[n_t],
            "search_mask": masks[n_t],
            "search_visible": torch.tensor(True),
            "dataset": pair.dataset,
        }
