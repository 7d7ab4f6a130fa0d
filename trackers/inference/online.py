"""Online (one-pass) trackers: initialise on frame 0, then follow the target frame by frame.

The crop, the ImageNet normalisation and the box mapping are ``trackers.geometry``'s, the same
functions the training pipeline crops with, so training and test time cannot drift apart. Family trackers only say
how a network's output becomes a normalised crop box (``predict``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from trackers.geometry.crops import clip_box_xywh, crop_box_to_frame, crop_pixels, crop_square, crop_window
from trackers.geometry.normalize import normalize_image


@dataclass
class TrackResult:
    box: np.ndarray  # (4,) frame xywh
    score: float | None = None
    extras: dict[str, float] = field(default_factory=dict)  # per-frame values a method records (e.g. DyTrack's exit index)


class OnlineTracker(ABC):
    """The OPE interface every tracker (learned or baseline) implements."""

    name: str = "tracker"

    @abstractmethod
    def initialize(self, frame: np.ndarray, box_xywh: np.ndarray) -> None:
        """Start a sequence on an RGB uint8 frame with the ground-truth box."""

    @abstractmethod
    def track(self, frame: np.ndarray) -> TrackResult:
        """Return the box in the next frame."""


class FirstBoxTracker(OnlineTracker):
    """Baseline that repeats the first-frame box: the floor a benchmark must keep far below a tracker."""

    name = "first_box"

    def initialize(self, frame: np.ndarray, box_xywh: np.ndarray) -> None:
        self._box = np.asarray(box_xywh, dtype=np.float64).copy()

    def track(self, frame: np.ndarray) -> TrackResult:
        return TrackResult(self._box.copy())


class CropTracker(OnlineTracker):
    """Template crop once, search crop around the previous box each frame, map back, clip (spec §6)."""

    def __init__(
        self,
        network: nn.Module,
        template_size: int,
        template_factor: float,
        search_size: int,
        search_factor: float,
        clip_margin: float = 10.0,
        name: str = "tracker",
    ) -> None:
        self.network = network
        self.template_size = template_size
        self.template_factor = template_factor
        self.search_size = search_size
        self.search_factor = search_factor
        self.clip_margin = clip_margin
        self.name = name
        self.device = next(network.parameters()).device
        self._state: np.ndarray | None = None

    def _to_input(self, image: np.ndarray) -> torch.Tensor:
        return normalize_image(image).unsqueeze(0).to(self.device)

    def initialize(self, frame: np.ndarray, box_xywh: np.ndarray) -> None:
        crop = crop_square(frame, box_xywh, self.template_factor, self.template_size)
        self.template = self._to_input(crop.image)
        self._state = np.asarray(box_xywh, dtype=np.float64).copy()
        self.on_initialize(frame, crop)

    def on_initialize(self, frame: np.ndarray, crop) -> None:  # noqa: ANN001 - CropResult
        """Hook for families that cache template-side work (e.g. MixFormerV2's template keys/values)."""

    @torch.inference_mode()
    def track(self, frame: np.ndarray) -> TrackResult:
        assert self._state is not None, "call initialize() first"
        # the search crop's pixels only: its padding mask (crop_square's) is a training input, not needed here
        window = crop_window(self._state, self.search_factor, frame.shape[1], frame.shape[0])
        resize_factor = self.search_size / window.size  # crop_square's, so the map-back is bit-identical
        box_norm, score = self.predict(self._to_input(crop_pixels(frame, window, self.search_size)))
        box = crop_box_to_frame(box_norm, self._state, self.search_size / resize_factor)
        height, width = frame.shape[:2]
        self._state = clip_box_xywh(box, height, width, self.clip_margin)
        self.on_tracked(frame, score)
        return TrackResult(self._state.copy(), score)

    def on_tracked(self, frame: np.ndarray, score: float | None) -> None:
        """Hook for template updates."""

    @abstractmethod
    def predict(self, search: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        """Run the network on a normalised search crop (1,3,S,S); return ((4,) crop cxcywh, score)."""
