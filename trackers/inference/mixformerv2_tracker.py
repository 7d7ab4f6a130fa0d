"""Online tracker of the MixFormer family (MixFormerV2, and MixViT without its score module).

Spec mixformerv2.md §7. Two templates go in: the static first-frame template and an online
template. The score head's confidence picks the best-scoring crop of the current interval; every
``update_interval`` frames it becomes the online template, and the candidate resets to the
first-frame template. No window penalty or other post-processing.

Unlike the official tracker, which re-encodes both templates every frame (its cached path is
broken, §9 #12), the templates are encoded once per template change (``prepare_templates``) and
each frame runs only the search and prediction tokens (``forward_with_cache``): the same boxes,
less work. ``use_template_cache: false`` runs the full forward instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from trackers.geometry.crops import CropResult, crop_square
from trackers.inference.crop_config import DEFAULT_CLIP_MARGIN, CropConfig
from trackers.inference.online import CropTracker


def _official_update_intervals() -> dict[str, int]:
    """MixFormerV2-B's per-benchmark intervals (test yaml); benchmarks not listed use ``update_interval``."""
    return {"lasot": 200, "got10k_test": 10, "trackingnet": 25, "vot20": 10, "vot20lt": 200}


@dataclass
class MixFormerTrackerConfig(CropConfig):
    """Test-time settings; ``search_factors`` / ``update_intervals`` override per benchmark (reader type).

    Official B: template 128 @ 2.0, search 288 @ 5.0 everywhere; S: 112 / 224, search factor 4.4 on
    LaSOT and 4.55 on TrackingNet / GOT-10k, GOT-10k interval 15. Sizes default to the network's.
    """

    search_factor: float = 5.0
    search_factors: dict[str, float] = field(default_factory=dict)
    update_interval: int = 200
    update_intervals: dict[str, int] = field(default_factory=_official_update_intervals)
    score_threshold: float = 0.5
    max_score_decay: float = 1.0
    use_template_cache: bool = True

    def build(self, network: nn.Module, benchmark: str | None = None, name: str = "mixformerv2") -> MixFormerTracker:
        """The tracker for ``benchmark`` (None: the defaults)."""
        key = (benchmark or "").lower()
        template_size, search_size = self.sizes(network)
        return MixFormerTracker(
            network,
            template_size,
            self.template_factor,
            search_size,
            self.search_factors.get(key, self.search_factor),
            update_interval=self.update_intervals.get(key, self.update_interval),
            score_threshold=self.score_threshold,
            max_score_decay=self.max_score_decay,
            use_template_cache=self.use_template_cache and hasattr(network, "prepare_templates"),
            clip_margin=self.clip_margin,
            name=name,
        )


class MixFormerTracker(CropTracker):
    """Static + online template; score-gated template update (online_size 1, the only working setting)."""

    def __init__(
        self,
        network: nn.Module,
        template_size: int,
        template_factor: float,
        search_size: int,
        search_factor: float,
        update_interval: int = 200,
        score_threshold: float = 0.5,
        max_score_decay: float = 1.0,
        use_template_cache: bool = True,
        clip_margin: float = DEFAULT_CLIP_MARGIN,
        name: str = "mixformerv2",
    ) -> None:
        super().__init__(network, template_size, template_factor, search_size, search_factor, clip_margin, name=name)
        if use_template_cache and not hasattr(network, "prepare_templates"):
            raise ValueError(f"{type(network).__name__} cannot cache templates; set tracker.use_template_cache: false")
        if update_interval < 1:
            raise ValueError(f"update_interval must be >= 1, got {update_interval}")
        self.update_interval = update_interval
        self.score_threshold = score_threshold
        self.max_score_decay = max_score_decay
        self.use_template_cache = use_template_cache
        self.has_score = bool(getattr(network, "has_score_head", False))

    # ------------------------------------------------------------------ hooks of CropTracker

    def on_initialize(self, frame: np.ndarray, crop: CropResult) -> None:
        self.initial_template = self.template
        self.online_template = self.template
        self.best_online = self.template
        self.max_score = -1.0
        self.frame_id = 0
        self._encode_templates()

    def predict(self, search: Tensor) -> tuple[Tensor, float | None]:
        kwargs = {"softmax": True, **({"run_score_head": True} if self.has_score else {})}
        if self.use_template_cache:
            out = self.network.forward_with_cache(self._cache, search, **kwargs)
        else:
            out = self.network(self.template, self.online_template, search, **kwargs)
        score = None if out.score is None else float(out.score.sigmoid()[0])
        return out.boxes[0], score

    def on_tracked(self, frame: np.ndarray, score: float | None) -> None:
        """Keep the best confident crop of the interval; swap it in every ``update_interval`` frames."""
        self.frame_id += 1
        if score is None:
            return
        self.max_score *= self.max_score_decay
        if score > self.score_threshold and score > self.max_score:
            crop = crop_square(frame, self._state, self.template_factor, self.template_size)
            self.best_online = self._to_input(crop.image)
            self.max_score = score
        if self.frame_id % self.update_interval == 0:
            self.online_template = self.best_online
            self.max_score = -1.0
            self.best_online = self.initial_template
            self._encode_templates()

    # ------------------------------------------------------------------ templates

    @torch.inference_mode()
    def _encode_templates(self) -> None:
        self._cache = self.network.prepare_templates(self.template, self.online_template) if self.use_template_cache else None
