"""Model speed: parameters, FLOPs (PyTorch's flop counter) and batch-1 latency; the tracker step's network share.

Latency follows the papers' model-only protocol (spec tracking_ecosystem §4.7): warm-up calls,
then timed calls, CUDA-synchronised on GPU; median and p90 are reported because a mean hides
the stalls that a tracker at 30 FPS cannot afford.
"""

from __future__ import annotations

import itertools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from trackers.errors import SetupError
from trackers.inference.runtime import (DEFAULT_BACKEND, DEFAULT_PRECISION, NetworkProxy, cpu_isa, cpuinfo_field,
                                       fp32_linear_in_use, int8_engine)


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
    environment: dict | None = None  # what the figure depends on (:func:`environment`)

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


def _register_onednn_linear_flops() -> None:
    """The oneDNN fp32 Linear (``trackers.inference.onednn_linear``) is ``mkldnn._linear_pointwise``, which torch's
    counter has no formula for: count it as the Linear it is (2 x rows x in x out), so FLOPs do not depend on
    the fp32 Linear engine a CPU picked."""
    packet = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    register = getattr(flop_counter, "register_flop_formula", None)
    if packet is None or register is None or packet in flop_counter.flop_registry:
        return

    @register(packet)
    def _onednn_linear_flop(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001, ANN002, ANN003
        rows = 1
        for size in input_shape[:-1]:
            rows *= size
        return 2 * rows * weight_shape[0] * weight_shape[1]


_register_cpu_attention_flops()
_register_onednn_linear_flops()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call, counted by ``torch.utils.flop_counter`` (matmuls, convs, attention)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        fn()
    return counter.get_total_flops()


# Entries compared in one run take turns of this many calls or frames (`lightning benchmark model|tracker`).
DEFAULT_TURN = 10
T = TypeVar("T")


def take_turns(streams: Sequence[Iterator[T]], warmup: int, turn: int, count: int | None = None,
               on_items: Callable[[int], object] = lambda n: None) -> list[list[T]]:
    """Every stream's items after its first ``warmup`` (discarded), taken in turns of ``turn`` items with
    the first stream of a round rotating, until a stream ends or has given ``count``; ``turn`` 0: one stream
    after the other. Why: on a shared machine slow phases last seconds, and timed one after the other
    the same network measured 197, 252 and 308 ms in runs minutes apart; in turns they fall on every
    entry alike, so ratios measured in one run hold."""
    for stream in streams:
        for _ in itertools.islice(stream, warmup):
            pass
    taken: list[list[T]] = [[] for _ in streams]
    turn = turn or sys.maxsize
    active, rounds = list(range(len(streams))), 0
    while active:
        first = rounds % len(active)
        for i in active[first:] + active[:first]:
            want = turn if count is None else min(turn, count - len(taken[i]))
            items = list(itertools.islice(streams[i], want))
            taken[i] += items
            on_items(len(items))
            if len(items) < want or (count is not None and len(taken[i]) >= count):
                active.remove(i)
        rounds += 1
    return taken


def timed_calls(fn: Callable[[], object], device: torch.device) -> Iterator[float]:
    """Milliseconds of each call of ``fn``, without end (CUDA-synchronised on a GPU)."""
    cuda = device.type == "cuda"
    while True:
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        yield (time.perf_counter() - start) * 1e3


def measure_latency(fn: Callable[[], object], device: torch.device, warmup: int = 20, iters: int = 100) -> list[float]:
    """Per-call latency in milliseconds after ``warmup`` untimed calls."""
    with torch.inference_mode():
        return take_turns([timed_calls(fn, device)], warmup, 0, iters)[0]


def speed_report(name: str, module: nn.Module, fn: Callable[[], object], device: torch.device,
                 warmup: int = 20, iters: int = 100, flops_fn: Callable[[], object] | None = None) -> SpeedReport:
    """``flops_fn``: the call whose FLOPs are counted, when ``fn`` runs ops torch's counter cannot see
    (int8 quantised Linear layers, onnxruntime): the model's arithmetic is its fp32 call's."""
    return report_from_times(name, module, count_flops(flops_fn or fn), measure_latency(fn, device, warmup, iters),
                             device)


def speed_reports(entries: Sequence[tuple[str, nn.Module, Callable[[], object], Callable[[], object] | None]],
                  device: torch.device, warmup: int = 20, iters: int = 100, turn: int = DEFAULT_TURN,
                  on_items: Callable[[int], object] = lambda n: None) -> list[SpeedReport]:
    """:func:`speed_report` of several (name, module, call, flops call) entries, their calls timed in turns
    (:func:`take_turns`) so their ratios hold on a machine whose speed drifts."""
    flops = [count_flops(flops_fn or fn) for _, _, fn, flops_fn in entries]
    with torch.inference_mode():
        times = take_turns([timed_calls(fn, device) for _, _, fn, _ in entries], warmup, turn, iters, on_items)
    return [report_from_times(name, module, f, t, device) for (name, module, _, _), f, t in zip(entries, flops, times)]


def report_from_times(name: str, module: nn.Module, flops: int, times: Sequence[float],
                      device: torch.device) -> SpeedReport:
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
        environment=environment(device),
    )


def latency_summary(times_ms: Sequence[float]) -> dict[str, float]:
    """Median, p10, p90, p99 and mean of per-call times in milliseconds (the speed JSON's keys)."""
    values = np.asarray(times_ms, dtype=np.float64)
    p10, median, p90, p99 = np.percentile(values, [10, 50, 90, 99])
    return {"median_ms": float(median), "p10_ms": float(p10), "p90_ms": float(p90), "p99_ms": float(p99),
            "mean_ms": float(values.mean())}


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), else what ``platform`` knows."""
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, object]:
    """What a speed figure depends on: CPU, threads, library versions, GPU and CUDA when used."""
    from importlib import metadata

    try:
        onnxruntime_version: str | None = metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        onnxruntime_version = None
    cuda = device.type == "cuda"
    return {
        "cpu": cpu_model(),
        "cpu_isa": cpu_isa(),
        "int8_engine": int8_engine(),
        "fp32_linear": fp32_linear_in_use(DEFAULT_PRECISION, DEFAULT_BACKEND, device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "onnxruntime": onnxruntime_version,
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
    }


class TimedNetwork(NetworkProxy):
    """Counts the time spent inside the network's calls (CUDA-synchronised), so a tracker's step splits
    into network and everything else (crop, normalise, decode, window, map-back, template update)."""

    def __init__(self, network: nn.Module, device: torch.device) -> None:
        super().__init__(network)
        self.cuda = torch.device(device).type == "cuda"
        self.elapsed_s = 0.0

    def take(self) -> float:
        """Seconds spent in network calls since the last ``take``."""
        elapsed, self.elapsed_s = self.elapsed_s, 0.0
        return elapsed

    def run(self, name: str, call: Callable[[], object]) -> object:
        start = time.perf_counter()
        out = call()
        if self.cuda:
            torch.cuda.synchronize()
        self.elapsed_s += time.perf_counter() - start
        return out
