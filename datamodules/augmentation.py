"""Training augmentation (spec tracking_ecosystem §3.1, §3.6).

Joint transforms roll once per sample and apply to every frame (templates and search alike);
per-crop transforms roll independently per crop. Every decision is drawn from the caller's numpy
Generator, so a sample is a pure function of its seed. Grayscale is OpenCV's RGB->GRAY replicated
to 3 channels, as upstream (the same pixels as albumentations' ``ToGray(method="weighted_average")``).
Brightness multiplies the float [0, 1] crop and clamps, as upstream (no uint8 re-quantisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable, Sequence
from typing import NamedTuple

import cv2
import numpy as np

from trackers.geometry.crops import hflip_crop_box_cxcywh, hflip_frame_box_xywh
from trackers.geometry.normalize import IMAGENET_MEAN, IMAGENET_STD, normalize_image


@dataclass(frozen=True)
class JointAugmentation:
    """Full-frame grayscale and horizontal flip, one roll per sample (applied to train and val alike).

    ``PairProcessor`` applies the roll to the crops (flip and grayscale commute with cropping);
    ``__call__`` applies it to full frames, as the straightforward reference does.
    """

    grayscale_prob: float = 0.05
    hflip_prob: float = 0.5

    def roll(self, rng: np.random.Generator) -> tuple[bool, bool]:
        """(grayscale, flip) for one sample: two uniform draws, whichever way they are applied."""
        gray, flip = rng.random(2) < (self.grayscale_prob, self.hflip_prob)
        return bool(gray), bool(flip)

    @staticmethod
    def grayscale(image: np.ndarray) -> np.ndarray:
        """RGB -> gray replicated to 3 channels (pixel-wise, so a crop may be converted instead of its frame)."""
        return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)

    def __call__(self, frames: Sequence[np.ndarray], boxes_xywh: np.ndarray,
                 rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
        """The literal full-frame version (reference pipeline, tests): transform the frames and boxes."""
        gray, flip = self.roll(rng)
        frames = list(frames)
        boxes = np.asarray(boxes_xywh, dtype=np.float64)
        if gray:
            frames = _map_unique(frames, self.grayscale)
        if flip:
            frames = _map_unique(frames, lambda f: cv2.flip(f, 1))
            widths = np.array([f.shape[1] for f in frames], dtype=np.float64)
            boxes = hflip_frame_box_xywh(boxes, widths)
        return frames, boxes


class AugmentedCrop(NamedTuple):
    """One crop after the per-crop transform, as arrays (the pair processor stacks them into tensors once).

    image:      (3, S, S) float32 normalised, or (S, S, 3) uint8 when normalisation is left to the device.
    pad_mask:   (S, S) bool.
    box:        (4,) float32 crop cxcywh.
    brightness: the factor still to apply with the normalisation (uint8 image), else None.
    """

    image: np.ndarray
    pad_mask: np.ndarray
    box: np.ndarray
    brightness: float | None


@dataclass(frozen=True)
class CropAugmentation:
    """Per-crop brightness jitter and horizontal flip, then ImageNet normalisation.

    ``brightness=0, hflip_prob=0`` gives the validation transform (to tensor + normalise only).
    ``normalize=False`` returns uint8 images with their brightness factor: the data module then
    normalises whole batches after the transfer (``trackers.geometry.normalize.normalize_uint8``, same values).
    """

    brightness: float = 0.2
    hflip_prob: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    normalize: bool = True

    def roll(self, rng: np.random.Generator) -> tuple[float, bool]:
        """(brightness factor, flip) for one crop."""
        beta = rng.uniform(max(0.0, 1.0 - self.brightness), 1.0 + self.brightness) if self.brightness else 1.0
        return float(beta), bool(rng.random() < self.hflip_prob)

    def __call__(self, crop: np.ndarray, pad_mask: np.ndarray, box_cxcywh: np.ndarray,
                 rng: np.random.Generator) -> AugmentedCrop:
        """The augmented crop (image, (S, S) bool padding mask, (4,) crop cxcywh, pending brightness)."""
        beta, flip = self.roll(rng)
        box = np.asarray(box_cxcywh, dtype=np.float32)
        if flip:
            crop, pad_mask, box = cv2.flip(crop, 1), pad_mask[:, ::-1], hflip_crop_box_cxcywh(box)
        if not self.normalize:
            return AugmentedCrop(crop, pad_mask, box, beta)
        return AugmentedCrop(normalize_image(crop, self.mean, self.std, brightness=beta).numpy(), pad_mask, box, None)


def _map_unique(frames: list[np.ndarray], fn: Callable[[np.ndarray], np.ndarray]) -> list[np.ndarray]:
    """Apply ``fn`` once per distinct frame object (a frame drawn twice is transformed once)."""
    done: dict[int, np.ndarray] = {}
    out = []
    for frame in frames:
        if id(frame) not in done:
            done[id(frame)] = fn(frame)
        out.append(done[id(frame)])
    return out
