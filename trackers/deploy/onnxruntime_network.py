"""An onnxruntime-backed drop-in for ``tracker.network``: the exported graphs run the per-frame step.

    tracker = module.build_tracker()
    tracker.network = onnxruntime_network(tracker.network, tracker.template_size, tracker.search_size)

The replacement offers exactly the calls the family's tracker makes on its network, so the same OPE
loop (crop, normalise, decode, window, map back, template update) runs on onnxruntime:

- ``CenterHeadTracker``: ``__call__(template, search, ce_template_mask=..., ce_keep_rate=...)`` -> output
  with ``.boxes`` and ``.aux`` score_map / size_map / offset_map;
- ``MixFormerTracker``: ``prepare_templates``, ``forward_with_cache``, ``has_score_head`` (and the full
  ``__call__``: template graph + search graph, for MixViT's tracker);
- ``DyTrackTracker``: ``num_exits``, ``exits``, ``embed``, ``iter_exits`` (segment graphs run one after the
  other; leaving the loop is the early stop, as in PyTorch).

``parameters()`` yields one empty CPU tensor (``CropTracker`` reads the device from it). Sessions use the
CPU execution provider with ``torch.get_num_threads()`` intra-op threads. Precision: fp32, or int8 (the
graphs' MatMul weights dynamically quantised by ``onnxruntime.quantization``); anything else is a
``SetupError``, never a silent fallback.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from trackers.deploy.onnx_export import check_against_torch, export_onnx, read_manifest, session_options, write_manifest
from trackers.errors import SetupError
from trackers.nn.heads.center import CenterHead
from trackers.types import TrackerOutput

PRECISIONS = ("fp32", "int8")
INT8_SUFFIX = ".int8.onnx"
INT8_OP_TYPES = ("MatMul",)
"""Dynamic int8 on the matrix products (the ONNX counterpart of torch.ao dynamic quantisation of Linear layers)."""


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise SetupError(
            f"--precision {precision}: the onnxruntime backend runs {' or '.join(PRECISIONS)} on CPU "
            f"(bf16 is not supported there); use --backend torch for {precision}"
        )


def onnxruntime_network(
    network: nn.Module,
    template_size: int,
    search_size: int,
    *,
    precision: str = "fp32",
    workdir: str | Path | None = None,
) -> nn.Module:
    """Export ``network``'s per-frame graphs (to ``workdir``, default a temporary folder kept as long as the
    returned module) and return the onnxruntime module that replaces it in its tracker."""
    check_precision(precision)
    temporary = None
    if workdir is None:
        temporary = tempfile.TemporaryDirectory(prefix="distiltrack-onnx-")
        workdir = temporary.name
    result = export_onnx(network, template_size, search_size, workdir)
    write_manifest(result)
    if precision == "int8":
        quantize_int8(result.out_dir, result.manifest)
    runtime = load_onnx_network(result.out_dir, precision=precision, source=network)
    runtime._workdir = temporary  # the folder lives as long as the module (lazy CE exports write there)
    return runtime


def load_onnx_network(folder: str | Path, *, precision: str = "fp32", source: nn.Module | None = None) -> nn.Module:
    """The onnxruntime module of an exported folder (``manifest.json`` + graphs), e.g. `lightning export`'s.

    ``source``: the PyTorch network, only needed by the centre family for a CE keep rate other than the
    exported one (that graph is exported on first use).
    """
    check_precision(precision)
    folder = Path(folder)
    manifest = read_manifest(folder)
    graphs = OnnxGraphs(folder, manifest, precision)
    family = manifest["family"]
    if family == "center":
        return OrtCenterHeadNetwork(graphs, source)
    if family == "mixformer":
        return OrtMixFormerNetwork(graphs)
    return OrtDyTrackNetwork(graphs)


def quantize_int8(folder: Path, manifest: dict[str, Any]) -> None:
    """``<graph>.int8.onnx`` next to each graph: dynamic int8 weights on every MatMul (activations quantised per call)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for graph in manifest["graphs"]:
        source = folder / graph["file"]
        quantize_dynamic(source, folder / int8_file(graph["file"]), weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(INT8_OP_TYPES))


def int8_file(fp32_file: str) -> str:
    return fp32_file.removesuffix(".onnx") + INT8_SUFFIX


class OnnxGraphs:
    """One onnxruntime session per graph of a manifest; ``run(name, **inputs)`` -> outputs by name (numpy)."""

    def __init__(self, folder: Path, manifest: dict[str, Any], precision: str = "fp32") -> None:
        import onnxruntime as ort

        self.folder = folder
        self.manifest = manifest
        self.precision = precision
        self.sessions: dict[str, Any] = {}
        self.outputs: dict[str, list[str]] = {}
        for graph in manifest["graphs"]:
            file = graph["file"] if precision == "fp32" else int8_file(graph["file"])
            path = folder / file
            if not path.is_file():
                raise SetupError(f"{path} not found (listed in {folder / 'manifest.json'}); export again")
            self.sessions[graph["name"]] = ort.InferenceSession(str(path), session_options(),
                                                                providers=["CPUExecutionProvider"])
            self.outputs[graph["name"]] = [o["name"] for o in graph["outputs"]]

    def run(self, name: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        values = self.sessions[name].run(self.outputs[name], inputs)
        return dict(zip(self.outputs[name], values))


def to_numpy(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())


class OrtNetwork(nn.Module):
    """Base of the drop-ins: the graphs, and one empty CPU parameter for ``CropTracker``'s device."""

    def __init__(self, graphs: OnnxGraphs) -> None:
        super().__init__()
        self.graphs = graphs
        self.manifest = graphs.manifest
        self.device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)
        self._workdir = None

    @property
    def precision(self) -> str:
        return self.graphs.precision


# ---------------------------------------------------------------------------------------------- centre head


class OrtCenterHeadNetwork(OrtNetwork):
    """OSTrack / CompressTracker: one graph, CE at the exported keep rate (other rates exported on first use)."""

    def __init__(self, graphs: OnnxGraphs, source: nn.Module | None = None) -> None:
        super().__init__(graphs)
        ce = self.manifest.get("candidate_elimination", {})
        self.exported_keep_rate = ce.get("ce_keep_rate")
        self._by_rate: dict[float | None, OnnxGraphs] = {self.exported_keep_rate: graphs}
        self._source = source
        self._ce_mask = source.ce_template_mask(1) if source is not None else None

    def ce_template_mask(self, batch_size: int, device: torch.device | None = None) -> Tensor | None:
        """The CE template rows baked into the graph (as the PyTorch network's)."""
        return None if self._ce_mask is None else self._ce_mask.expand(batch_size, -1).to(device or "cpu")

    def _graphs_for(self, ce_keep_rate: float | None) -> OnnxGraphs:
        if ce_keep_rate not in self._by_rate:
            if self._source is None:
                raise SetupError(
                    f"the ONNX graph was exported with ce_keep_rate {self.exported_keep_rate}, the tracker asks for "
                    f"{ce_keep_rate}; export with `lightning export` from that checkpoint (it records its keep rate)"
                )
            folder = self.graphs.folder / f"ce_keep_rate_{ce_keep_rate}"
            template_size, search_size = self.manifest["template_size"], self.manifest["search_size"]
            result = export_onnx(self._source, template_size, search_size, folder, ce_keep_rate=ce_keep_rate)
            write_manifest(result)
            if self.precision == "int8":
                quantize_int8(folder, result.manifest)
            self._by_rate[ce_keep_rate] = OnnxGraphs(folder, result.manifest, self.precision)
        return self._by_rate[ce_keep_rate]

    def forward(self, template: Tensor, search: Tensor, ce_template_mask: Tensor | None = None,
                ce_keep_rate: float | None = None) -> TrackerOutput:
        out = self._graphs_for(ce_keep_rate).run("network", template=to_numpy(template), search=to_numpy(search))
        maps = {name: torch.from_numpy(value) for name, value in out.items()}
        boxes = CenterHead.decode(maps["score_map"], maps["size_map"], maps["offset_map"])
        return TrackerOutput(boxes=boxes, score=None, aux=maps)


# ---------------------------------------------------------------------------------------------- MixFormer


@dataclass(frozen=True)
class OrtTemplateCache:
    """The exported template graph's outputs, kept as numpy arrays between template updates."""

    keys: np.ndarray
    values: np.ndarray


class OrtMixFormerNetwork(OrtNetwork):
    """MixFormerV2 / MixViT: the template graph once per template change, the search graph per frame."""

    @property
    def has_score_head(self) -> bool:
        return bool(self.manifest.get("has_score_head", False))

    def prepare_templates(self, template: Tensor, online_template: Tensor | None) -> OrtTemplateCache:
        online = template if online_template is None else online_template
        out = self.graphs.run("template", template=to_numpy(template), online_template=to_numpy(online))
        return OrtTemplateCache(out["template_keys"], out["template_values"])

    def forward_with_cache(self, cache: OrtTemplateCache, search: Tensor, softmax: bool = True,
                           run_score_head: bool = False, return_features: Any = ()) -> TrackerOutput:
        if not softmax or tuple(return_features):
            raise SetupError("the ONNX search graph returns the decoded box (softmax=True) and no features; "
                             "use --backend torch for distillation outputs")
        out = self.graphs.run("search", search=to_numpy(search), template_keys=cache.keys,
                              template_values=cache.values)
        if run_score_head and "score" not in out:
            raise ValueError("run_score_head=True but the exported model has no score head")
        score = torch.from_numpy(out["score"]) if run_score_head else None
        return TrackerOutput(boxes=torch.from_numpy(out["boxes"]), score=score, aux={})

    def forward(self, template: Tensor, online_template: Tensor | None, search: Tensor, softmax: bool = True,
                run_score_head: bool = False) -> TrackerOutput:
        """The full forward (the tracker's ``use_template_cache: false`` path, MixViT's): both graphs."""
        return self.forward_with_cache(self.prepare_templates(template, online_template), search, softmax, run_score_head)


# ---------------------------------------------------------------------------------------------- DyTrack


@dataclass(frozen=True)
class OrtTokenState:
    """The token sequence between DyTrack segments (no CE: the tokens are the whole state)."""

    tokens: np.ndarray


class OrtDyTrackNetwork(OrtNetwork):
    """DyTrack: ``embed`` graph, then one graph per exit segment; later segments never run after a break."""

    @property
    def exits(self) -> tuple[int, ...]:
        return tuple(self.manifest["exits"])

    @property
    def num_exits(self) -> int:
        return len(self.exits)

    def embed(self, template: Tensor, search: Tensor) -> OrtTokenState:
        return OrtTokenState(self.graphs.run("embed", template=to_numpy(template), search=to_numpy(search))["tokens"])

    def iter_exits(self, state: OrtTokenState) -> Iterator[TrackerOutput]:
        tokens, recycled = state.tokens, {}
        inputs = {g["name"]: [i["name"] for i in g["inputs"]] for g in self.manifest["graphs"]}
        for k in range(self.num_exits):
            name = f"exit_{k}"
            feeds = {"tokens": tokens, **{n: recycled[n] for n in inputs[name] if n != "tokens"}}
            out = self.graphs.run(name, **feeds)
            tokens = out.pop("tokens_out", None)
            recycled.update({n: v for n, v in out.items() if n.startswith("recycled_")})
            maps = {n: torch.from_numpy(out[n]) for n in ("score_map", "size_map", "offset_map", "iou")}
            boxes = CenterHead.decode(maps["score_map"], maps["size_map"], maps["offset_map"])
            yield TrackerOutput(boxes=boxes, score=None, aux={**maps, "exit": k, "depth": self.exits[k]})
