"""The straightforward training-pair pipeline that `lightning benchmark data` measures ``PairProcessor`` against.

It does what a first implementation (and upstream) would: decode every full frame with OpenCV,
convert it to RGB, apply grayscale/flip to the full frames, pad the full frame (SiamFC-style: by
the largest pad the window needs, only when it leaves the frame), crop, zero the upstream ``+1``
border, resize, resize the full 2-D padding mask, then brightness/flip/normalise float tensors.
It draws its random decisions in ``PairProcessor``'s order, so on the same sample key both give the
same sample (boxes exactly, pixels closely); the tests use it as the literal reference.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import torch

from datamodules.augmentation import CropAugmentation, JointAugmentation
from datamodules.pair_dataset import RawPair
from datamodules.pair_processor import CropSettings, crop_is_valid, jitter_box
from trackers.errors import InvalidSample
from trackers.frames import FrameReadError, as_frame
from trackers.geometry.crops import crop_window, frame_box_to_crop, hflip_crop_box_cxcywh


class ReferencePairProcessor:
    """The straightforward pipeline (full-frame decode, full-frame augment, pad the full frame, crop, resize)."""

    def __init__(self, template: CropSettings, search: CropSettings, joint: JointAugmentation,
                 per_crop: CropAugmentation, mask_stride: int, frame_sizes: Counter) -> None:
        self.template, self.search, self.joint, self.per_crop = template, search, joint, per_crop
        self.mask_stride, self.frame_sizes = mask_stride, frame_sizes
        self.mean = torch.tensor(per_crop.mean)[:, None, None]
        self.std = torch.tensor(per_crop.std)[:, None, None]

    def __call__(self, pair: RawPair, rng: np.random.Generator) -> dict:
        n_t = len(pair.template_frames)
        decoded: dict[int, np.ndarray] = {}
        for f in pair.template_frames + pair.search_frames:
            if id(f) not in decoded:
                decoded[id(f)] = _upstream_load(f.path) if hasattr(f, "path") else as_frame(f).decode(1)
                self.frame_sizes[decoded[id(f)].shape[1::-1]] += 1
        frames = [decoded[id(f)] for f in pair.template_frames + pair.search_frames]
        frames, boxes = self.joint(frames, np.concatenate([pair.template_boxes, pair.search_boxes]), rng)
        settings = [self.template] * n_t + [self.search]
        crops = []
        for frame, box, s in zip(frames, boxes, settings, strict=True):
            jittered = jitter_box(box, s.center_jitter, s.scale_jitter, rng)
            image, mask, size = self._crop(frame, jittered, s)
            if not crop_is_valid(mask, self.mask_stride):
                raise InvalidSample("crop lies entirely in the padding")
            crops.append((image, mask, frame_box_to_crop(box, jittered, s.size / size, s.size)))
        images, masks, crop_boxes = zip(*(self._augment(*c, rng) for c in crops), strict=True)
        return {"template": torch.stack(images[:n_t]), "template_box": torch.stack(crop_boxes[:n_t]),
                "template_mask": torch.stack(masks[:n_t]), "search": images[n_t], "search_box": crop_boxes[n_t],
                "search_mask": masks[n_t], "search_visible": torch.tensor(pair.search_visible),
                "dataset": pair.dataset}

    @staticmethod
    def _crop(frame: np.ndarray, box: np.ndarray, s: CropSettings) -> tuple[np.ndarray, np.ndarray, int]:
        height, width = frame.shape[:2]
        w = crop_window(box, s.factor, width, height)
        pad = max(0, w.left, w.top, w.right, w.bottom)  # SiamFC-style: pad the whole frame only when needed
        padded = frame if not pad else cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        crop = padded[w.y1 + pad : w.y1 + pad + w.size, w.x1 + pad : w.x1 + pad + w.size].copy()
        mask = np.ones((w.size, w.size), np.float32)
        mask[w.top : w.size - w.bottom, w.left : w.size - w.right] = 0.0
        crop[mask != 0] = 0  # the upstream +1: the last row/column becomes padding
        image = cv2.resize(crop, (s.size, s.size), interpolation=cv2.INTER_LINEAR)
        return image, cv2.resize(mask, (s.size, s.size), interpolation=cv2.INTER_LINEAR) != 0, w.size

    def _augment(self, crop: np.ndarray, mask: np.ndarray, box: np.ndarray,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        beta, flip = self.per_crop.roll(rng)
        image = (torch.from_numpy(crop).permute(2, 0, 1).float() / 255.0 * beta).clamp(0.0, 1.0)
        mask_t, box_t = torch.from_numpy(mask), torch.as_tensor(box, dtype=torch.float32)
        if flip:
            image, mask_t, box_t = image.flip(-1), mask_t.flip(-1), hflip_crop_box_cxcywh(box_t)
        return (image - self.mean) / self.std, mask_t, box_t


def _upstream_load(path: Path) -> np.ndarray:
    """Upstream's frame loader: OpenCV decode to BGR, then a full-frame BGR->RGB conversion."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise FrameReadError(f"cannot decode frame '{path}'")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
