"""Training pairs: jitter, crop planning, validity and GT mapping, then ``PairProcessor`` (spec
tracking_ecosystem §3.2-3.5).

The crops themselves are the shared ones of ``trackers.geometry.crops`` (the test-time tracker
crops with the same functions). Because a crop's geometry (``crop_window``) needs only the box and
the frame size, ``PairProcessor`` plans every crop of a sample from the JPEG headers, rejects
unusable samples before decoding anything, decodes each frame once at the smallest scale its crops
allow, and applies the joint flip and grayscale to the small crops instead of the full frames. The
flip is exact (the crop of the mirrored window, mirrored); grayscale after the resize differs from
grayscale before it by rounding only (±1 level); the reduced-scale decode is a close approximation
(well under one grey level on average).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np
import torch
from torch import Tensor

from datamodules.pair_dataset import RawPair
from trackers.errors import InvalidSample
from trackers.frames import DECODE_REDUCTIONS, Frame, as_frame
from trackers.geometry.crops import CropWindow, crop_pixels, crop_window, frame_box_to_crop, hflip_frame_box_xywh, pad_mask


@dataclass(frozen=True)
class CropSettings:
    """One crop kind (template or search): output side, context factor, and jitter of spec §3.2."""

    size: int
    factor: float
    center_jitter: float = 0.0
    scale_jitter: float = 0.0


def decode_reduction(crop_size: int, output_size: int, max_reduction: int = DECODE_REDUCTIONS[-1]) -> int:
    """Largest JPEG decode reduction k (1, 2, 4, 8) with crop_size / output_size >= k: never upsamples."""
    return max(k for k in DECODE_REDUCTIONS if k == 1 or (k <= max_reduction and crop_size >= k * output_size))


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
class CropPlan:
    """Geometry of one crop, decided before any pixel is decoded."""

    window: CropWindow
    pad_mask: np.ndarray
    box: np.ndarray  # GT in the crop, normalised cxcywh
    output_size: int


def plan_crop(box_xywh: np.ndarray, settings: CropSettings, width: int, height: int, rng: np.random.Generator,
              mask_stride: int) -> CropPlan:
    """Jitter, window, padding mask, validity and GT mapping of one crop; raises InvalidSample to redraw."""
    jittered = jitter_box(box_xywh, settings.center_jitter, settings.scale_jitter, rng)
    window = crop_window(jittered, settings.factor, width, height)
    mask = pad_mask(window, settings.size)
    if not window.inside_image and not crop_is_valid(mask, mask_stride):
        raise InvalidSample("crop lies entirely in the padding")
    box = frame_box_to_crop(box_xywh, jittered, settings.size / window.size, settings.size)
    return CropPlan(window, mask, box, settings.size)


class JointTransform(Protocol):
    """The per-sample joint augmentation (``augmentation.JointAugmentation``), applied crop-wise here."""

    def roll(self, rng: np.random.Generator) -> tuple[bool, bool]: ...  # (grayscale, flip)

    def grayscale(self, image: np.ndarray) -> np.ndarray: ...


class CropTransform(Protocol):
    """The per-crop transform (``augmentation.CropAugmentation``): returns an ``AugmentedCrop``."""

    def __call__(self, crop: np.ndarray, pad_mask: np.ndarray, box_cxcywh: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, float | None]: ...


class PairProcessor:
    """RawPair -> one training sample (the per-sample part of a ``TrackingBatch``).

    Random decisions in upstream order: the joint roll (grayscale, flip) once per sample, then
    per frame jitter + window + validity + GT mapping, then the per-crop transform (which
    normalises, or leaves uint8 crops and their brightness for the device). Pixels are fetched
    only once every crop is known to be valid: each frame is decoded once, at the largest
    reduction (<= ``max_decode_reduction``) all its crops allow. ``joint`` is a
    ``JointAugmentation``, ``per_crop`` a ``CropAugmentation``.
    """

    def __init__(self, template: CropSettings, search: CropSettings, joint: JointTransform,
                 per_crop: CropTransform, mask_stride: int = 16, max_decode_reduction: int = 8) -> None:
        if max_decode_reduction not in DECODE_REDUCTIONS:
            raise ValueError(f"max_decode_reduction must be one of {DECODE_REDUCTIONS}, got {max_decode_reduction}")
        self.template, self.search = template, search
        self.joint, self.per_crop, self.mask_stride = joint, per_crop, mask_stride
        self.max_decode_reduction = max_decode_reduction
        self.decode_counts: Counter[int] = Counter()  # frames decoded per reduction, in this process

    def __call__(self, pair: RawPair, rng: np.random.Generator) -> dict:
        if len(pair.search_frames) != 1:
            raise ValueError(f"PairProcessor makes one search crop per sample, got {len(pair.search_frames)}")
        n_t = len(pair.template_frames)
        frames = _shared_frames(pair.template_frames + pair.search_frames)
        boxes = np.concatenate([pair.template_boxes, pair.search_boxes]).astype(np.float64)
        gray, flip = self.joint.roll(rng)
        sizes = [f.size for f in frames]
        if flip:
            boxes = hflip_frame_box_xywh(boxes, np.array([w for w, _ in sizes], dtype=np.float64))
        settings = [self.template] * n_t + [self.search]
        plans = [plan_crop(box, s, width, height, rng, self.mask_stride)
                 for box, s, (width, height) in zip(boxes, settings, sizes, strict=True)]

        reductions: dict[int, int] = {}  # per frame: the largest reduction all of its crops allow
        for frame, plan in zip(frames, plans, strict=True):
            limit = min(frame.max_reduction, self.max_decode_reduction)
            k = decode_reduction(plan.window.size, plan.output_size, limit)
            reductions[id(frame)] = min(k, reductions.get(id(frame), k))
        decoded: dict[int, np.ndarray] = {}
        images, masks, crop_boxes, brightness = [], [], [], []
        for frame, plan, (width, _) in zip(frames, plans, sizes, strict=True):
            k = reductions[id(frame)]
            if id(frame) not in decoded:
                decoded[id(frame)] = frame.decode(k)
                self.decode_counts[k] += 1
            window = plan.window.mirrored(width) if flip else plan.window  # flip the crop, not the frame
            crop = crop_pixels(decoded[id(frame)], window, plan.output_size, k)
            if flip:
                crop = cv2.flip(crop, 1)
            if gray:
                crop = self.joint.grayscale(crop)
            image, mask, box, beta = self.per_crop(crop, plan.pad_mask, plan.box, rng)
            images.append(image)
            masks.append(mask)
            crop_boxes.append(box)
            brightness.append(beta)
        return _stack_sample(images, masks, crop_boxes, brightness, n_t, pair)


def _stack_sample(images: list[np.ndarray], masks: list[np.ndarray], boxes: list[np.ndarray],
                  brightness: list[float | None], n_t: int, pair: RawPair) -> dict:
    """The per-crop arrays as the sample's tensors (templates stacked), converted once per sample."""
    box = torch.from_numpy(np.stack(boxes))
    sample = {
        "template": _image_tensor(np.stack(images[:n_t])),
        "template_box": box[:n_t],
        "template_mask": torch.from_numpy(np.stack(masks[:n_t])),
        "search": _image_tensor(images[n_t]),
        "search_box": box[n_t],
        "search_mask": torch.from_numpy(np.ascontiguousarray(masks[n_t])),
        "search_visible": torch.tensor(pair.search_visible),
        "dataset": pair.dataset,
    }
    if brightness[0] is not None:
        factors = torch.tensor(brightness, dtype=torch.float32)
        sample["template_brightness"], sample["search_brightness"] = factors[:n_t], factors[n_t]
    return sample


def _image_tensor(image: np.ndarray) -> Tensor:
    """Channel-first tensor of normalised (..., 3, S, S) float or (..., S, S, 3) uint8 crops (a view for uint8)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image))
    return tensor.movedim(-1, -3) if image.dtype == np.uint8 else tensor


def _shared_frames(raw: Sequence[Frame | np.ndarray]) -> list[Frame]:
    """Frames as ``Frame`` objects; one input object requested twice stays one object (decoded once)."""
    wrapped: dict[int, Frame] = {}
    for f in raw:
        if id(f) not in wrapped:
            wrapped[id(f)] = as_frame(f)
    return [wrapped[id(f)] for f in raw]
