"""Crop, jitter, GT mapping and validity of training pairs (spec tracking_ecosystem §3.2-3.5).

``crop_square`` and ``normalize_image`` are also what the test-time tracker uses (spec §6), so a
training crop and an inference crop of the same box are the same pixels. The upstream quirks are
kept on purpose for parity: half-to-even rounding of the crop origin, the ``+1`` right/bottom pad,
the ``(S - 1) / 2`` crop centre of the GT mapping.

The crop is split in two: ``crop_window`` is the geometry (window, pads) computed from the box and
the frame size alone, ``crop_pixels`` fetches the pixels. That lets ``PairProcessor`` plan every
crop of a sample from the JPEG headers, reject unusable samples before decoding anything, decode
each frame once at the smallest scale its crops allow, and apply the joint flip and grayscale to
the small crops instead of the full frames. The flip is exact (the crop of the mirrored window,
mirrored); grayscale after the resize differs from grayscale before it by rounding only (±1 level);
the reduced-scale decode is a close approximation (well under one grey level on average).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np
import torch
from torch import Tensor

from datamodules.pair_dataset import RawPair
from datamodules.readers.frames import DECODE_REDUCTIONS, Frame, as_frame
from datamodules.sampler import SampleRejected
from trackers.nn.box_ops import frame_box_to_crop, hflip_frame_box_xywh

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


def decode_reduction(crop_size: int, output_size: int, max_reduction: int = DECODE_REDUCTIONS[-1]) -> int:
    """Largest JPEG decode reduction k (1, 2, 4, 8) with crop_size / output_size >= k: never upsamples."""
    return max(k for k in DECODE_REDUCTIONS if k == 1 or (k <= max_reduction and crop_size >= k * output_size))


def normalize_image(image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    brightness: float = 1.0) -> Tensor:
    """ImageNet-normalised float32 (3, S, S) tensor of an RGB uint8 (S, S, 3) image.

    ``brightness`` first multiplies the [0, 1] image and clamps it (the training brightness
    jitter). Each output value depends only on (channel, uint8 value), so one 256-entry table per
    channel, applied plane by plane straight into the channel-first output, gives the float
    pipeline's exact values at a fraction of its cost.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise TypeError(f"normalize_image expects an RGB uint8 (H, W, 3) array, got {image.dtype} {image.shape}")
    levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
    if brightness != 1.0:
        levels = np.clip(levels * np.float32(brightness), 0.0, 1.0)
    m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    tables = np.ascontiguousarray(((levels[:, None] - m) / s).T, dtype=np.float32)  # (3, 256)
    out = np.empty((3, *image.shape[:2]), np.float32)
    for c, plane in enumerate(cv2.split(image)):
        cv2.LUT(plane, tables[c].reshape(1, 256), dst=out[c])
    return torch.from_numpy(out)


def normalize_uint8(images: Tensor, brightness: Tensor | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """ImageNet-normalised float32 of uint8 ``(..., 3, H, W)`` images, on their device.

    The batched twin of ``normalize_image``, for pipelines that ship uint8 crops (4x less to copy
    between processes and to the GPU) and normalise after the transfer. ``brightness`` ``(...)``
    multiplies each [0, 1] image and clamps it, in the same float32 steps, so the values equal the
    worker-side table's.
    """
    if images.dtype != torch.uint8 or images.dim() < 3 or images.shape[-3] != 3:
        raise TypeError(f"normalize_uint8 expects uint8 (..., 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
    x = images.to(torch.float32).div_(255.0)
    if brightness is not None:
        x = (x * brightness.to(device=x.device, dtype=torch.float32)[..., None, None, None]).clamp_(0.0, 1.0)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device)[:, None, None]
    s = torch.tensor(std, dtype=torch.float32, device=x.device)[:, None, None]
    return x.sub_(m).div_(s)


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


def process_crop(frame: np.ndarray, box_xywh: np.ndarray, settings: CropSettings, rng: np.random.Generator,
                 mask_stride: int) -> ProcessedCrop:
    """Jitter, crop, map the GT and check validity for one decoded frame; raises InvalidSample to redraw."""
    plan = plan_crop(box_xywh, settings, frame.shape[1], frame.shape[0], rng, mask_stride)
    return ProcessedCrop(crop_pixels(frame, plan.window, plan.output_size), plan.pad_mask, plan.box)


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
