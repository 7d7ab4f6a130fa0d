"""Model speed: parameters, FLOPs (PyTorch's flop counter) and batch-1 latency.

Latency follows the papers' model-only protocol (spec tracking_ecosystem §4.7): warm-up calls,
then timed calls, CUDA-synchronised on GPU; median and p90 are reported because a mean hides
the stalls that a tracker at 30 FPS cannot afford.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class SpeedReport:
    name: str
    params_m: float
    gflops: float  # multiply-adds counted twice (PyTorch's flop counter)
    gmacs: float  # what tracking papers call "GFLOPs"
    latency_ms_median: float
    latency_ms_p90: float
    fps: float
    device: str

    def as_dict(self) -> dict:
        return asdict(self)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call, counted by ``torch.utils.flop_counter`` (matmuls, convs, attention)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        fn()
    return counter.get_total_flops()


def measure_latency(fn: Callable[[], object], device: torch.device, warmup: int = 20, iters: int = 100) -> list[float]:
    """Per-call latency in milliseconds after ``warmup`` untimed calls."""
    cuda = device.type == "cuda"
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        if cuda:
            torch.cuda.synchronize(device)
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize(device)
            times.append((time.perf_counter() - start) * 1e3)
    return times


def speed_report(name: str, module: nn.Module, fn: Callable[[], object], device: torch.device,
                 warmup: int = 20, iters: int = 100) -> SpeedReport:
    flops = count_flops(fn)
    times = measure_latency(fn, device, warmup, iters)
    median = statistics.median(times)
    p90 = statistics.quantiles(times, n=10)[-1] if len(times) >= 10 else max(times)
    return SpeedReport(
        name=name,
        params_m=count_parameters(module) / 1e6,
        gflops=flops / 1e9,
        gmacs=flops / 2e9,
        latency_ms_median=median,
        latency_ms_p90=p90,
        fps=1e3 / median,
        device=str(device),
    )
