"""Precision and backend of a built online tracker: the one place ``--precision`` / ``--backend`` act.

Every tool (`lightning test`, `track`, `benchmark model|tracker`) builds its tracker as usual, then calls
:func:`apply_runtime`; the family trackers stay unaware of it, because what changes is only the object
they call as ``self.network``:

- ``bf16``: :class:`AutocastNetwork` runs every call the tracker makes on its network (the forward,
  MixFormerV2's ``prepare_templates`` / ``forward_with_cache``, DyTrack's ``embed`` / each step of
  ``iter_exits``) under ``torch.autocast`` (CPU and CUDA), and hands the outputs back in fp32, so the
  box decode, the Hann window and the map-back stay fp32. Template caches stay in bf16 for the next call.
  On a CPU without bf16 instructions it warns in one line (emulated bf16 measured 5-6x slower than fp32).
- ``int8``: ``torch.ao.quantization.quantize_dynamic`` of the Linear layers of a *copy* of the network
  (the module's own network stays fp32 for training or another tracker); CPU only. The quantised engine
  is oneDNN where the CPU has int8 dot-product instructions (VNNI / AMX), else torch's default (see
  :func:`int8_engine`); it is set for the quantisation and for each call, and restored after.
- ``fp32`` on the torch backend: torch's own ``nn.Linear`` (its BLAS), or on AMD CPUs with AVX-512 a copy of
  the network whose Linear layers run through oneDNN with packed weights (:func:`fp32_linear_engine`; the same
  fp32 arithmetic, measured 1.8-2.1x per frame there); ``DISTILTRACK_FP32_LINEAR=torch|onednn`` overrides.
- ``--backend onnxruntime``: the deploy package's drop-in network (``trackers.deploy.onnxruntime_network``,
  imported lazily: the torch path needs no onnxruntime); CPU, fp32 (or what that function accepts).

A combination that cannot run (int8 on CUDA, bf16 with onnxruntime, bf16 on a GPU without bf16) is one
:class:`~trackers.errors.SetupError` line, never a silent fallback to fp32.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import platform
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from timm.layers import PatchEmbed
from torch import Tensor, nn

from trackers.errors import SetupError
from trackers.inference.onednn_linear import onednn_linear_available, onednn_linear_network
from trackers.inference.online import CropTracker, OnlineTracker
from trackers.nn.heads.center import CenterHead
from trackers.nn.heads.corner import _CornerHeadBase
from trackers.nn.heads.distribution import DistributionHead
from trackers.nn.heads.score import ScoreHead

PRECISIONS = ("fp32", "bf16", "int8")
BACKENDS = ("torch", "onnxruntime")
DEFAULT_PRECISION, DEFAULT_BACKEND = "fp32", "torch"
# Network calls whose outputs the tracker decodes (cast back to fp32); other calls' outputs (template
# caches, token states) feed the network again and keep their dtype.
DECODED_CALLS = frozenset({"forward", "forward_with_cache", "iter_exits", "exit_output"})


def runtime_suffix(precision: str = DEFAULT_PRECISION, backend: str = DEFAULT_BACKEND) -> str:
    """``""`` for fp32/torch, else ``_bf16``, ``_int8``, ``_onnxruntime``, ``_int8_onnxruntime``: result
    folders and tracker names carry a non-default runtime, so runs never overwrite each other."""
    parts = ([precision] if precision != DEFAULT_PRECISION else []) + ([backend] if backend != DEFAULT_BACKEND else [])
    return "".join(f"_{p}" for p in parts)


def check_runtime(precision: str, backend: str, device: torch.device | str, fp32_linear: str | None = None) -> None:
    """Refuse, in one line naming the flag, what this precision/backend (and fp32 Linear engine) cannot run on
    ``device``."""
    device = torch.device(device)
    if fp32_linear is not None and fp32_linear not in FP32_LINEAR_ENGINES:
        raise SetupError(f"fp32 Linear engine {fp32_linear!r} is not one of {', '.join(FP32_LINEAR_ENGINES)}")
    if fp32_linear == "onednn" and device.type != "cpu":
        raise SetupError(f"the oneDNN fp32 Linear engine runs on CPU, not on {device}; set {FP32_LINEAR_ENV}=torch")
    if precision not in PRECISIONS:
        raise SetupError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if backend not in BACKENDS:
        raise SetupError(f"--backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if precision == "int8" and device.type != "cpu":
        raise SetupError(f"--precision int8 (dynamic quantisation of the Linear layers) runs on CPU only, "
                         f"not on {device}; pass --device cpu or --precision bf16")
    if precision == "bf16" and backend == "onnxruntime":
        raise SetupError("--precision bf16 is autocast, a PyTorch mechanism; onnxruntime runs fp32 "
                         "(or int8): pass --backend torch for bf16")
    if backend == "onnxruntime" and device.type != "cpu":
        raise SetupError(f"--backend onnxruntime runs on CPU here, not on {device}; pass --device cpu")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SetupError(f"--precision bf16: the GPU {torch.cuda.get_device_name(device)} has no bf16; "
                         "pass --precision fp32")


def apply_runtime(tracker: OnlineTracker, precision: str = DEFAULT_PRECISION,
                  backend: str = DEFAULT_BACKEND, fp32_linear: str | None = None) -> OnlineTracker:
    """``tracker`` (modified in place and returned) running its network at ``precision`` on ``backend``.

    Its ``name`` gets :func:`runtime_suffix`. fp32/torch keeps the tracker's network, except that on CPU with the
    ``fp32_linear`` engine ``onednn`` (default :func:`fp32_linear_engine`) it runs a copy whose Linear layers go
    through oneDNN; the name stays (the arithmetic is fp32 either way).
    """
    if precision == DEFAULT_PRECISION and backend == DEFAULT_BACKEND:
        has_network = isinstance(tracker, CropTracker)
        device = tracker.device if has_network else torch.device("cpu")
        check_runtime(precision, backend, device, fp32_linear)
        if has_network and fp32_linear_in_use(precision, backend, device, fp32_linear) == "onednn":
            tracker.network = onednn_linear_network(tracker.network)
        return tracker
    if not isinstance(tracker, CropTracker):
        raise SetupError(f"--precision {precision} / --backend {backend}: the {type(tracker).__name__} tracker "
                         "has no network to run at another precision or backend")
    check_runtime(precision, backend, tracker.device)
    tracker.network.eval()
    if backend == "onnxruntime":
        from trackers.deploy.onnxruntime_network import onnxruntime_network  # lazy: torch runs need no onnxruntime

        tracker.network = onnxruntime_network(tracker.network, tracker.template_size, tracker.search_size,
                                              precision=precision)
    elif precision == "int8":
        tracker.network = quantize_linear_int8(tracker.network)
    elif precision == "bf16":
        if tracker.device.type == "cpu" and not has_native_bf16():
            warnings.warn(slow_bf16_message(), stacklevel=2)
        tracker.network = AutocastNetwork(tracker.network, tracker.device.type, torch.bfloat16)
    tracker.name = f"{tracker.name}{runtime_suffix(precision, backend)}"
    return tracker


# The vector / matrix instruction sets torch reports (``torch.cpu._is_<name>_supported``). The bf16 and int8
# ratios over fp32 depend on them more than on anything else: measured network-only in turns, int8 over
# fp32 was 2.2-2.6x on a 2-core Xeon with AMX and 2.6-3.8x on a 2-core EPYC with AVX-512 VNNI and no AMX.
CPU_ISA_PROBES = ("avx2", "avx512", "vnni", "avx512_bf16", "amx_tile", "amx_fp16")


def cpu_isa() -> list[str]:
    """The :data:`CPU_ISA_PROBES` this CPU has (probes a torch build lacks count as absent)."""
    return [name for name in CPU_ISA_PROBES if getattr(torch.cpu, f"_is_{name}_supported", lambda: False)()]


# Instructions that give a CPU bf16 matmuls; without one, oneDNN emulates them and bf16 is slower than fp32.
NATIVE_BF16_ISA = ("avx512_bf16", "amx_tile")


def has_native_bf16() -> bool:
    """Whether this CPU has bf16 matmul instructions (:data:`NATIVE_BF16_ISA`)."""
    return bool(set(NATIVE_BF16_ISA) & set(cpu_isa()))


def slow_bf16_message() -> str:
    """The one line ``--precision bf16`` warns on a CPU without :data:`NATIVE_BF16_ISA`. bf16 still runs (the
    boxes are those of bf16 anywhere), but measured network-only over fp32 in turns on a 2-core EPYC with AVX2
    only: OSTrack-256 0.17x, MixFormerV2-S 0.20x, CompressTracker-4 0.21x, while int8 ran 1.4-1.8x there."""
    has = ", ".join(cpu_isa()) or "none of " + ", ".join(CPU_ISA_PROBES)
    return (f"--precision bf16: this CPU has no bf16 instructions ({' or '.join(NATIVE_BF16_ISA)}; it has {has}), "
            "so bf16 is emulated (measured 5-6x slower than fp32 on an AVX2-only CPU); for speed pass --precision int8")


def int8_engine() -> str:
    """The quantised engine int8 runs on: ``onednn`` where the CPU has VNNI or AMX int8 instructions, else
    torch's default. Measured network-only over fp32 against torch's default ``x86`` engine: on a Xeon with
    AMX, OSTrack-256 2.28x vs 1.69x, CompressTracker-4 1.96x vs 1.64x, MixFormerV2-S 3.16x vs 2.09x; on an
    EPYC with AVX-512 VNNI and no AMX (in turns, ``fbgemm`` alongside), OSTrack-256 3.96x vs 3.60x (3.51x),
    CompressTracker-4 3.32x vs 3.06x (3.04x), MixFormerV2-S 2.85x vs 2.77x (2.84x)."""
    has_int8_dot = bool({"vnni", "amx_tile"} & set(cpu_isa()))
    if has_int8_dot and "onednn" in torch.backends.quantized.supported_engines:
        return "onednn"
    return torch.backends.quantized.engine


FP32_LINEAR_ENGINES = ("torch", "onednn")
FP32_LINEAR_ENV = "DISTILTRACK_FP32_LINEAR"  # auto (default), torch or onednn


def cpuinfo_field(name: str, path: str = "/proc/cpuinfo") -> str | None:
    """The first ``name`` field of ``/proc/cpuinfo`` (``vendor_id``, ``model name``), None where there is none."""
    try:
        with open(path) as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_vendor() -> str:
    """``GenuineIntel``, ``AuthenticAMD``, ... (``/proc/cpuinfo``), else what ``platform`` knows."""
    return cpuinfo_field("vendor_id") or platform.processor()


def fp32_linear_engine() -> str:
    """The engine fp32 Linear layers run on for the torch backend on CPU: ``$DISTILTRACK_FP32_LINEAR`` when set,
    else ``onednn`` on AMD CPUs with AVX-512 (where MKL's sgemm leaves AVX-512 unused: fp32 per frame, measured
    in turns on a 2-core EPYC of family 26, network only, OSTrack-256 2.10x, MixFormerV2-S 1.77x,
    CompressTracker-4 1.83x faster) and ``torch`` everywhere else (AVX2-only EPYC: the two tied; Intel: MKL is
    Intel's own)."""
    choice = os.environ.get(FP32_LINEAR_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", *FP32_LINEAR_ENGINES):
        raise SetupError(f"{FP32_LINEAR_ENV}={choice!r}: set it to auto, {' or '.join(FP32_LINEAR_ENGINES)}")
    if choice != "auto":
        return choice
    fast_on_onednn = cpu_vendor() == "AuthenticAMD" and "avx512" in cpu_isa()
    return "onednn" if fast_on_onednn and onednn_linear_available() else "torch"


def fp32_linear_in_use(precision: str, backend: str, device: torch.device | str,
                       fp32_linear: str | None = None) -> str | None:
    """The fp32 Linear engine :func:`apply_runtime` gives a tracker with these settings (None: not fp32/torch)."""
    if precision != DEFAULT_PRECISION or backend != DEFAULT_BACKEND:
        return None
    return fp32_linear or (fp32_linear_engine() if torch.device(device).type == "cpu" else "torch")


@contextmanager
def quantized_engine(engine: str) -> Iterator[None]:
    """``torch.backends.quantized.engine`` set to ``engine`` inside, restored after (it is process state)."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def quantize_linear_int8(network: nn.Module, engine: str | None = None) -> nn.Module:
    """A copy of ``network`` whose ``nn.Linear`` layers are dynamically quantised to int8 (weights int8,
    activations quantised per call) for ``engine`` (default :func:`int8_engine`), wrapped so that every
    call runs on that engine; the original is left as it is."""
    if next(network.parameters()).device.type != "cpu":
        raise SetupError("--precision int8 runs on CPU only; pass --device cpu")
    engine = engine or int8_engine()
    if engine not in torch.backends.quantized.supported_engines:
        raise SetupError(f"--precision int8: the quantised engine {engine!r} is not built into this torch "
                         f"(it has {', '.join(torch.backends.quantized.supported_engines)})")
    with quantized_engine(engine):  # weights are packed for the engine active here
        quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(network).eval(), {nn.Linear},
                                                           dtype=torch.qint8)
    if not any(_is_dynamic_quantized_linear(m) for m in quantized.modules()):
        raise SetupError(f"--precision int8: {type(network).__name__} has no nn.Linear layer to quantise")
    return Int8Network(quantized, engine)


def _is_dynamic_quantized_linear(module: nn.Module) -> bool:
    return isinstance(module, torch.ao.nn.quantized.dynamic.Linear)


def to_float32(value: Any) -> Any:
    """``value`` with every floating tensor in fp32 (tensors, dataclasses such as TrackerOutput, dicts,
    lists, tuples); everything else as it is."""
    if isinstance(value, Tensor):
        return value.float() if value.is_floating_point() else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: to_float32(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, dict):
        return {k: to_float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(to_float32(v) for v in value)
    return value


class NetworkProxy(nn.Module):
    """Stands for a network: attributes and sub-modules are the wrapped network's; every method call (and
    ``__call__``) goes through :meth:`run`, which subclasses override (autocast, timing). Generators
    (DyTrack's ``iter_exits``) are run step by step through :meth:`run` as well."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.inner = network

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # parameters, buffers, sub-modules (``inner``)
        except AttributeError:
            pass
        attr = getattr(self._modules["inner"], name)
        if not callable(attr) or isinstance(attr, nn.Module) or isinstance(attr, type):
            return attr  # values (num_exits, has_score_head) and sub-modules (backbone) as they are
        return lambda *args, **kwargs: self._call(name, attr, args, kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("forward", self._modules["inner"], args, kwargs)

    def _call(self, name: str, fn: Callable, args: tuple, kwargs: dict) -> Any:
        out = self.run(name, lambda: fn(*args, **kwargs))
        return self._steps(name, out) if inspect.isgenerator(out) else out

    def _steps(self, name: str, generator: Iterator) -> Iterator:
        sentinel = object()
        while (item := self.run(name, lambda: next(generator, sentinel))) is not sentinel:
            yield item

    def run(self, name: str, call: Callable[[], Any]) -> Any:
        """Run one network call (``name``: the method, ``forward`` for ``__call__``)."""
        return call()


FP32_HEADS = (CenterHead, _CornerHeadBase, DistributionHead, ScoreHead)
# Modules bf16 runs in fp32: the prediction heads and the patch embedding (a fraction of a per cent of
# the FLOPs at full size; bf16 there rounds the input pixels themselves).
FP32_MODULES = (*FP32_HEADS, PatchEmbed)


def _outside_autocast(forward: Callable, device_type: str) -> Callable:
    """``forward`` in fp32 with autocast off (its floating inputs cast up)."""

    def fp32_forward(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type=device_type, enabled=False):
            return forward(*to_float32(args), **to_float32(kwargs))

    return fp32_forward


# Layers whose weights autocast casts to the low precision on every call: cast once instead.
AUTOCAST_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


class AutocastNetwork(NetworkProxy):
    """Every network call under ``torch.autocast(device_type, dtype)``; decoded outputs back in fp32.

    ``cast_weights``: run a copy whose Linear / conv weights are stored in ``dtype`` already. Autocast
    would round them the same way on every call (so the outputs are the same), but re-casting 90 M
    parameters per frame costs more than the bf16 matmuls save on a CPU (OSTrack-256: 1.6x -> 2.4x over
    fp32 measured on this machine); norms and everything else keep fp32 parameters.

    ``fp32_modules``: module types whose layers run in fp32 outside autocast (default
    :data:`FP32_MODULES`). Measured on the trained OSTrack miniature along fp32's own trajectory (60
    SynthTrack sequences, ``scripts/precision_drift.py``): bf16's 8-bit mantissa in the prediction heads
    moves the argmax and the box sizes (largest box error 0.11 px -> 0.02 px on centred crops with the
    heads in fp32), and in the patch embedding it rounds the input pixels (p95 box error 0.123 -> 0.048
    px, frames off by more than 0.5 px 15 -> 3 with it in fp32); no block of the transformer matters
    as much (attention, MLP, first or last block in fp32: p95 0.123-0.129 px).
    """

    def __init__(self, network: nn.Module, device_type: str, dtype: torch.dtype = torch.bfloat16,
                 cast_weights: bool = True, fp32_modules: tuple[type[nn.Module], ...] = FP32_MODULES) -> None:
        if cast_weights or fp32_modules:
            network = copy.deepcopy(network)
        kept = [m for m in network.modules() if isinstance(m, fp32_modules)] if fp32_modules else []
        in_kept = {id(sub) for module in kept for sub in module.modules()}
        for module in kept:  # the layers, not the module's forward: DyTrack calls head methods directly
            for layer in module.modules():
                if not any(True for _ in layer.children()) and any(True for _ in layer.parameters(recurse=False)):
                    layer.forward = _outside_autocast(layer.forward, device_type)
        if cast_weights:
            for module in network.modules():
                if isinstance(module, AUTOCAST_WEIGHT_LAYERS) and id(module) not in in_kept:
                    module.to(dtype)
        super().__init__(network)
        self.device_type = device_type
        self.dtype = dtype

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def run(self, name: str, call: Callable[[], Any]) -> Any:
        with self.autocast():
            out = call()
        return to_float32(out) if name in DECODED_CALLS else out


class Int8Network(NetworkProxy):
    """A dynamically quantised network whose calls run on the quantised ``engine`` its weights were packed
    for (the activations' quantisation follows the engine active at call time: ~10 % of a frame measured)."""

    def __init__(self, network: nn.Module, engine: str) -> None:
        super().__init__(network)
        self.engine = engine

    def run(self, name: str, call: Callable[[], Any]) -> Any:
        with quantized_engine(self.engine):
            return call()
