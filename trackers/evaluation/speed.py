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
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from trackers.errors import SetupError


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


def resolve_device(name: str) -> torch.device:
    """The ``--device`` of a tool, refused in one line when CUDA is asked for and absent."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SetupError(f"--device {name!r} is not a torch device; pass cpu or cuda (cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SetupError(f"--device {name} but no CUDA GPU is visible; pass --device cpu")
    return device


def _register_cpu_attention_flops() -> None:
    """On CPU, ``scaled_dot_product_attention`` runs ``_scaled_dot_product_flash_attention_for_cpu``;
    torch releases whose flop counter lacks a formula for it would count attention as 0 FLOPs on CPU
    only. Register torch's own SDPA formula there so CPU and GPU counts agree."""
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    register = getattr(flop_counter, "register_flop_formula", None)
    if op is None or register is None or op in flop_counter.flop_registry:
        return

    @register(op)
    def _cpu_flash_attention_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001, ANN002, ANN003
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


_register_cpu_attention_flops()


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
