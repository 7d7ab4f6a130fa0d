"""ONNX export of a family's per-frame network, its check against PyTorch, and the manifest next to the graphs.

    result = export_onnx(network, template_size=128, search_size=256, out_dir="onnx/", tracker=tracker)
    diffs = check_against_torch(result)          # {graph: max abs diff} on random inputs, onnxruntime CPU
    write_manifest(result, diffs)                # onnx/manifest.json

The graphs are ``trackers.deploy.graphs``' (one per step of a frame); the exporter is
``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript), which traces every family, candidate
elimination included, at static batch 1. The manifest says everything a user needs to run the files
without the suite: inputs and outputs with shapes, crop sizes and factors, normalisation, the template
update rule and the decode rule.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trackers.deploy.graphs import GraphSpec, family_graphs, family_of
from trackers.errors import SetupError
from trackers.geometry.normalize import IMAGENET_MEAN, IMAGENET_STD

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "distiltrack-onnx/1"
EXPORTER = "torch.onnx.export(dynamo=True)"
FP32_TOLERANCE = 1e-4
"""Largest max-abs difference between a graph on onnxruntime and PyTorch accepted in fp32 (issue 14)."""
TRACKER_SETTINGS = ("template_factor", "search_factor", "clip_margin", "use_window", "ce_keep_rate",
                    "update_interval", "score_threshold", "max_score_decay", "thresholds")
"""Tracker attributes the manifest records when a tracker is given (those the tracker has)."""

DECODE_RULES = {
    "center": (
        "score_map (1,1,F,F) times a centred Hann window (use_window); (iy, ix) = argmax; box centre = "
        "((ix + offset_map[0,iy,ix]) / F, (iy + offset_map[1,iy,ix]) / F), size = size_map[:, iy, ix] (w, h); "
        "a normalised crop cxcywh, times search_size / resize_factor around the previous box centre in the frame"
    ),
    "mixformer": (
        "boxes (1,4) is already decoded: normalised crop cxcywh (softmax expectation over the bins of each side); "
        "map to the frame as the centre head's; score is a logit (sigmoid = confidence)"
    ),
    "dytrack": (
        "per exit as the centre head (Hann-windowed score_map argmax, offset, size); the first exit whose iou >= "
        "its threshold answers, the deepest exit always answers"
    ),
}
TEMPLATE_RULES = {
    "center": "fixed first-frame template, never updated",
    "mixformer": (
        "run 'template' on the first-frame template twice (static = online) at init; each frame keep the "
        "template crop (template_factor, template_size) of the frame whose sigmoid(score) > score_threshold is "
        "highest in the interval (max decays by max_score_decay per frame); every update_interval frames it "
        "becomes the online template, 'template' runs again and the candidate resets"
    ),
    "dytrack": "fixed first-frame template, embedded with each search ('embed')",
}


@dataclass
class ExportResult:
    """What ``export_onnx`` wrote: the folder, the graphs (modules kept for the check) and the manifest."""

    out_dir: Path
    graphs: list[GraphSpec]
    manifest: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


def tracker_settings(tracker: Any) -> dict[str, Any]:
    """The test-time settings of a built tracker the manifest records (factors, window, update/exit rules)."""
    settings = {}
    for name in TRACKER_SETTINGS:
        if hasattr(tracker, name):
            value = getattr(tracker, name)
            settings[name] = [float(v) for v in value] if isinstance(value, (tuple, list)) else value
    return settings


def export_onnx(
    network: nn.Module,
    template_size: int,
    search_size: int,
    out_dir: str | Path,
    *,
    ce_keep_rate: float | None = None,
    tracker: Any = None,
    file_prefix: str = "",
) -> ExportResult:
    """Export every graph of ``network``'s per-frame step (eval mode, fp32, batch 1) to ``out_dir``.

    ``ce_keep_rate``: the centre family's CE keep rate baked into the graph (None: each CE block's configured
    ratio, the official test path; 1: no elimination). ``tracker``: a built tracker whose settings go into
    the manifest (factors, template update / exit thresholds).
    """
    out = prepare_out_dir(out_dir)
    network = network.float().eval()
    family = family_of(network)
    graphs = family_graphs(network, template_size, search_size, ce_keep_rate)
    files, entries = {}, []
    for graph in graphs:
        path = out / f"{file_prefix}{graph.name}.onnx"
        example = graph.example_inputs(torch.Generator().manual_seed(0))
        export_graph(graph, example, path)
        with torch.no_grad():
            outputs = as_tuple(graph.module(*example))
        files[graph.name] = path
        entries.append({
            "name": graph.name,
            "file": path.name,
            "inputs": [{"name": n, "shape": list(s), "dtype": "float32"} for n, s in graph.inputs.items()],
            "outputs": [{"name": n, "shape": list(t.shape), "dtype": "float32"} for n, t in zip(graph.outputs, outputs)],
        })
    manifest = build_manifest(network, family, template_size, search_size, entries, ce_keep_rate, tracker)
    return ExportResult(out, graphs, manifest, files)


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` and prove it writable before anything is exported (one-line error otherwise)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise SetupError(f"--out {out}: cannot write there ({reason}); pass a writable folder") from err
    return out


def export_graph(graph: GraphSpec, example: tuple[torch.Tensor, ...], path: Path) -> None:
    """One graph through the dynamo exporter, weights inside the file; the exporter's progress lines are muted."""
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph.module, example, str(path), input_names=list(graph.inputs), output_names=list(graph.outputs),
            dynamo=True, external_data=False, verbose=False,
        )


def build_manifest(network: nn.Module, family: str, template_size: int, search_size: int,
                   graphs: list[dict[str, Any]], ce_keep_rate: float | None, tracker: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "family": family,
        "network": type(network).__name__,
        "exporter": EXPORTER,
        "torch": torch.__version__,
        "precision": "fp32",
        "batch_size": 1,
        "template_size": template_size,
        "search_size": search_size,
        "normalization": {
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "input": "RGB crop, float32 NCHW, (uint8 / 255 - mean) / std per channel",
        },
        "crops": "square crop of side sqrt(w*h)*factor around the box centre, resized to the size, zero padding",
        "decode": DECODE_RULES[family],
        "template_update": TEMPLATE_RULES[family],
        "graphs": graphs,
    }
    if tracker is not None:
        manifest["tracker"] = tracker_settings(tracker)
    if family == "center":
        ratios = network.backbone.ce_keep_ratios
        manifest["candidate_elimination"] = {
            "blocks": sorted(ratios),
            "keep_ratios": [ratios[i] for i in sorted(ratios)],
            "ce_keep_rate": ce_keep_rate,
            "in_graph": bool(ratios) and (ce_keep_rate is None or ce_keep_rate < 1),
            "template_range": network.backbone.ce_template_range,
            "note": "exported with the keep rate above (null: each CE block's ratio); elimination traced in the graph",
        }
    elif family == "mixformer":
        manifest["has_score_head"] = bool(getattr(network, "has_score_head", False))
        manifest["template_cache"] = ("template_keys / template_values: (depth, 1, heads, 2 * template tokens, head_dim), "
                                      "the exact per-block template keys/values (asymmetric attention)")
    else:
        manifest["exits"] = list(network.exits)
        manifest["recycling"] = network.recycler.schema
    return manifest


def as_tuple(value: Any) -> tuple[torch.Tensor, ...]:
    return value if isinstance(value, tuple) else (value,)


def session_options(threads: int | None = None):  # noqa: ANN201 - onnxruntime.SessionOptions
    """CPU session options: intra-op threads = torch's (``torch.get_num_threads()``), one inter-op thread, and
    no spinning: idle pool threads would otherwise busy-wait after each run and take the cores from the next
    session (DyTrack runs one per segment each frame: 0.7x PyTorch with spinning, 2.4x without) or from
    PyTorch work in the same process."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def check_against_torch(result: ExportResult, seed: int = 0) -> dict[str, float]:
    """Max abs difference per graph between onnxruntime (CPU) and PyTorch on random normal inputs (not the
    export's trace inputs)."""
    import onnxruntime as ort

    diffs = {}
    generator = torch.Generator().manual_seed(seed + 1)
    for graph in result.graphs:
        session = ort.InferenceSession(str(result.files[graph.name]), session_options(), providers=["CPUExecutionProvider"])
        inputs = graph.example_inputs(generator)
        got = session.run(list(graph.outputs), {n: x.numpy() for n, x in zip(graph.inputs, inputs)})
        with torch.no_grad():
            want = as_tuple(graph.module(*inputs))
        diffs[graph.name] = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))
    return diffs


def write_manifest(result: ExportResult, diffs: dict[str, float] | None = None) -> Path:
    """``manifest.json`` next to the graphs; ``diffs`` (the check) are recorded per graph."""
    manifest = dict(result.manifest)
    if diffs is not None:
        manifest["check"] = {"max_abs_diff": diffs, "tolerance": FP32_TOLERANCE, "inputs": "random normal",
                             "runtime": "onnxruntime CPUExecutionProvider"}
    path = result.out_dir / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise SetupError(f"{path} not found; export the graphs first with `lightning export ... --out {folder}`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise SetupError(f"{path}: format {manifest.get('format')!r} is not {MANIFEST_FORMAT}; export again")
    return manifest
