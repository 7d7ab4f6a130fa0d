"""`lightning benchmark data`: samples/s per worker of the pair pipeline against a straightforward reference.

Both pipelines run in ONE process on the SAME samples: the same sample keys, hence the same frame
ids, joint roll, jitter and per-crop rolls (the random decisions are drawn in the same order).
The reference (``datamodules.reference_pipeline``) decodes and augments full frames. The pipeline
under test plans crops from the JPEG headers, decodes each frame once at a reduced scale when its
crops allow, works on crops only and (``normalize_on_device``, the default) ships uint8 crops whose
normalisation runs after the transfer, on the GPU in training; that step is timed separately here
(on this CPU) and reported, not counted as worker time. Throughput is CPU time of this
single-threaded process (OpenCV and torch limited to one thread), i.e. samples/s per DataLoader
worker, robust to other jobs sharing the machine. The outputs are compared too: boxes must agree
exactly, pixels closely (reduced-scale decoding and grayscale rounding differ slightly).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from datamodules.augmentation import CropAugmentation
from datamodules.datamodule import TrackingDataModule, normalize_pair_batch
from datamodules.pair_processor import PairProcessor
from datamodules.reference_pipeline import ReferencePairProcessor
from lightning_app.config_loading import build_datamodule_from_configs
from trackers.errors import SetupError

WARMUP_SAMPLES = 5


@dataclass
class DataBenchmarkResult:
    """Figures of one data benchmark run (CPU seconds of one process for the same samples)."""

    configs: list[str]
    num_samples: int
    template: str
    search: str
    frame_sizes: dict[str, int]
    pipeline_seconds: float
    reference_seconds: float
    uint8_crops: bool = False  # the workers ship uint8 crops, normalised after the transfer
    device_seconds: float = 0.0  # that normalisation (on the GPU in training), timed on this CPU
    decode_reductions: dict[str, int] = field(default_factory=dict)
    box_max_abs_diff: float = 0.0
    pixel_mean_abs_diff: float = 0.0
    redraws: int = 0

    @property
    def pipeline_label(self) -> str:
        return "DistilTrack (planned crops, reduced decode" + (", uint8)" if self.uint8_crops else ")")

    @property
    def pipeline_rate(self) -> float:
        return self.num_samples / self.pipeline_seconds

    @property
    def reference_rate(self) -> float:
        return self.num_samples / self.reference_seconds

    @property
    def speedup(self) -> float:
        return self.reference_seconds / self.pipeline_seconds

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pipeline_samples_per_s": self.pipeline_rate,
                "reference_samples_per_s": self.reference_rate, "speedup": self.speedup}

    def table(self) -> str:
        rows = [
            f"data pipeline benchmark: {' + '.join(self.configs)}",
            f"{self.num_samples} samples; templates {self.template}; search {self.search}; frames (WxH: count) "
            + ", ".join(f"{k}: {v}" for k, v in self.frame_sizes.items()),
            f"{'pipeline':<50} {'samples/s/worker':>16} {'ms/sample':>10} {'speed-up':>9}",
            f"{'reference (full decode, full-frame pad)':<50} {self.reference_rate:>16.1f} "
            f"{1e3 / self.reference_rate:>10.2f} {1.0:>8.2f}x",
            f"{self.pipeline_label:<50} {self.pipeline_rate:>16.1f} "
            f"{1e3 / self.pipeline_rate:>10.2f} {self.speedup:>8.2f}x",
            *([f"uint8 crops: normalisation after the transfer (GPU in training), timed on this CPU: "
               f"{1e3 * self.device_seconds / self.num_samples:.2f} ms/sample, not in the worker figure"]
              if self.uint8_crops else []),
            "frame decodes per reduction: " + ", ".join(f"1/{k}: {v}" for k, v in self.decode_reductions.items()),
            f"same samples: max |box difference| {self.box_max_abs_diff:.2e}, mean |pixel difference| "
            f"{self.pixel_mean_abs_diff:.2f} / 255; {self.redraws} redraws",
            "CPU time of one single-threaded process, both pipelines interleaved in this run",
        ]
        return "\n".join(rows)


def build_datamodule(config_paths: list[str]) -> TrackingDataModule:
    """The data module of the composed configs, built by the parser `lightning fit` uses."""
    return build_datamodule_from_configs(config_paths)


def run_data_benchmark(config_paths: list[str], num_samples: int) -> DataBenchmarkResult:
    """Time ``num_samples`` training samples through the pipeline and the reference, interleaved."""
    dm = build_datamodule(config_paths)
    dataset = dm.build_train_set()
    processor: PairProcessor = dataset.process
    frame_sizes: Counter = Counter()
    reference = ReferencePairProcessor(dm.template, dm.search, dm.joint, dm.train_crop_aug, dm.mask_stride,
                                       frame_sizes)
    threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        for key in range(WARMUP_SAMPLES):
            dataset.sample(key, processor)
            dataset.sample(key, reference)
        processor.decode_counts.clear()
        frame_sizes.clear()
        seconds = {"pipeline": 0.0, "reference": 0.0, "device": 0.0}
        box_diff, pixel_diffs, redraws = 0.0, [], 0
        for key in range(WARMUP_SAMPLES, WARMUP_SAMPLES + num_samples):
            order = [("pipeline", processor), ("reference", reference)]
            outputs = {}
            for name, process in order if key % 2 else order[::-1]:
                start = time.process_time()
                outputs[name], n = dataset.sample(key, process)
                seconds[name] += time.process_time() - start
            redraws += n
            start = time.process_time()  # a no-op unless the workers ship uint8 crops
            outputs["pipeline"] = normalize_pair_batch(outputs["pipeline"], dm.train_crop_aug.mean,
                                                       dm.train_crop_aug.std)
            seconds["device"] += time.process_time() - start
            box_diff, pixel_diff = _compare(outputs["pipeline"], outputs["reference"], box_diff, dm.train_crop_aug)
            pixel_diffs.append(pixel_diff)
    finally:
        cv2.setNumThreads(threads[0])
        torch.set_num_threads(threads[1])
    t, s = dm.template, dm.search
    return DataBenchmarkResult(
        configs=[Path(c).as_posix() for c in config_paths], num_samples=num_samples,
        template=f"{t.number} x {t.size} @ {t.factor}", search=f"{s.size} @ {s.factor}",
        frame_sizes={f"{w}x{h}": n for (w, h), n in sorted(frame_sizes.items())},
        pipeline_seconds=seconds["pipeline"], reference_seconds=seconds["reference"],
        uint8_crops=dm.normalizes_on_device(), device_seconds=seconds["device"],
        decode_reductions={str(k): processor.decode_counts[k] for k in sorted(processor.decode_counts)},
        box_max_abs_diff=box_diff, pixel_mean_abs_diff=float(np.mean(pixel_diffs)), redraws=redraws,
    )


def _compare(a: dict, b: dict, box_diff: float, aug: CropAugmentation) -> tuple[float, float]:
    """(running max |box difference|, mean |pixel difference| in 0..255) of two samples."""
    for key in ("template_box", "search_box"):
        box_diff = max(box_diff, float((a[key] - b[key]).abs().max()))
    std = torch.tensor(aug.std)[:, None, None] * 255.0  # normalised units -> 0..255
    crops = [(a["search"], b["search"]), *zip(a["template"], b["template"], strict=True)]
    return box_diff, float(np.mean([float(((x - y) * std).abs().mean()) for x, y in crops]))
