"""PyTorch vs onnxruntime per-frame network time of one tracker, measured in one run (`lightning export --benchmark`).

Both trackers are the module's own (``build_tracker``), initialised on the same frame; the first runs PyTorch's
default fp32 (``apply_runtime``: with its Linear layers on oneDNN where the CPU calls for it), the second gets
the onnxruntime network. Each timed call is the tracker's ``predict`` on one search crop: exactly the network
calls a frame makes (centre head: one forward; MixFormer: the cached search step; DyTrack: embed and the
segments up to the answering exit), plus the few-microsecond decode. The two backends alternate in short
rounds, so load from other processes on the machine hits both alike; the medians are compared.
End-to-end tracker FPS is `lightning benchmark tracker`'s (the speed part of issue 14).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trackers.deploy.onnxruntime_network import onnxruntime_network
from trackers.inference.runtime import DEFAULT_BACKEND, DEFAULT_PRECISION, apply_runtime, fp32_linear_in_use

FRAME_SIZE = (240, 320)  # (H, W) of the synthetic initialisation frame
INIT_BOX = np.array([130.0, 90.0, 60.0, 50.0])
WARMUP_CALLS = 3
ROUND = 5  # calls per backend before switching


@dataclass
class BackendComparison:
    name: str
    torch_ms: float
    onnxruntime_ms: float
    threads: int
    frames: int
    fp32_linear: str = "torch"  # PyTorch's fp32 Linear engine (``trackers.inference.runtime``)

    @property
    def speedup(self) -> float:
        """onnxruntime over PyTorch (> 1: onnxruntime is faster)."""
        return self.torch_ms / self.onnxruntime_ms

    def summary(self) -> str:
        return (f"{self.name}: per-frame network (median of {self.frames}, {self.threads} threads, fp32, CPU): "
                f"PyTorch ({self.fp32_linear} Linear) {self.torch_ms:.2f} ms, onnxruntime {self.onnxruntime_ms:.2f} ms, "
                f"onnxruntime/PyTorch speed {self.speedup:.2f}x")


def compare_backends(module: nn.Module, frames: int = 50, seed: int = 0) -> BackendComparison:
    """Median per-frame ``predict`` time of the module's tracker on PyTorch and on onnxruntime (fp32, CPU)."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (*FRAME_SIZE, 3), dtype=np.uint8)
    module.to("cpu").eval()
    reference, runtime = apply_runtime(module.build_tracker()), module.build_tracker()
    runtime.network = onnxruntime_network(runtime.network, runtime.template_size, runtime.search_size)
    search = torch.from_numpy(rng.standard_normal((1, 3, reference.search_size, reference.search_size), np.float32))
    times: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
    trackers = {"torch": reference, "onnxruntime": runtime}
    with torch.inference_mode():
        for tracker in trackers.values():
            tracker.initialize(frame, INIT_BOX)
            for _ in range(WARMUP_CALLS):
                tracker.predict(search)
        while len(times["torch"]) < frames:
            for name, tracker in trackers.items():
                for _ in range(ROUND):
                    start = time.perf_counter()
                    tracker.predict(search)
                    times[name].append(time.perf_counter() - start)
    median = {name: 1e3 * float(np.median(t[:frames])) for name, t in times.items()}
    return BackendComparison(type(reference.network).__name__, median["torch"], median["onnxruntime"],
                             torch.get_num_threads(), frames, fp32_linear_in_use(DEFAULT_PRECISION, DEFAULT_BACKEND, "cpu"))
