"""`lightning export`: an experiment's per-frame network as ONNX graphs, checked against PyTorch, with a manifest.

    lightning export --config configs/mixformerv2_s_score.yaml --checkpoint run.ckpt --out onnx/mixformerv2_s

The network is the experiment's (composed ``--config`` files, as for `lightning fit`); the weights come from
a Lightning ``.ckpt`` or an official ``.pth.tar`` (``trackers.models.checkpoints.load_weights``, as
`lightning track`). What is exported per family, the check and the manifest: ``trackers.deploy``.
``--benchmark`` also times the network per frame on PyTorch and on onnxruntime (fp32, CPU, same threads).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lightning_app.config_loading import build_model_from_configs
from trackers.deploy.onnx_export import FP32_TOLERANCE, check_against_torch, export_onnx, prepare_out_dir, write_manifest
from lightning_app.commands.track import check_weights_file, load_module_weights
from trackers.errors import SetupError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightning export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", required=True, help="experiment YAML (repeat to compose)")
    parser.add_argument("--checkpoint", help="Lightning .ckpt or official .pth.tar (default: untrained weights)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the .onnx graphs and manifest.json")
    parser.add_argument("--benchmark", action="store_true", help="also time PyTorch vs onnxruntime per frame (fp32, CPU)")
    parser.add_argument("--frames", type=int, default=50, help="timed frames per backend with --benchmark")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.checkpoint:
        check_weights_file(args.checkpoint)
    if args.out.exists() and not args.out.is_dir():
        raise SetupError(f"--out {args.out} is a file; pass a folder for the graphs")
    prepare_out_dir(args.out)
    module = build_model_from_configs(args.config)
    network = getattr(module, "network", None)
    if network is None:
        raise SetupError(f"{type(module).__name__} has no network to export; pass an experiment config of a learned tracker")
    if args.checkpoint:
        load_module_weights(module, args.checkpoint)
    else:
        print("warning: no --checkpoint given, the network has untrained weights", file=sys.stderr)
    module.to("cpu").eval()
    tracker = module.build_tracker()
    result = export_onnx(tracker.network, tracker.template_size, tracker.search_size, args.out,
                         ce_keep_rate=getattr(tracker, "ce_keep_rate", None), tracker=tracker)
    diffs = check_against_torch(result)
    manifest = write_manifest(result, diffs)
    for name, diff in diffs.items():
        verdict = "ok" if diff <= FP32_TOLERANCE else f"ABOVE {FP32_TOLERANCE:g}"
        print(f"{result.files[name]}: max abs diff vs PyTorch {diff:.2e} ({verdict})")
    print(f"manifest: {manifest}")
    if args.benchmark:
        from trackers.deploy.speed import compare_backends

        print(compare_backends(module, args.frames).summary())
    return 0 if all(d <= FP32_TOLERANCE for d in diffs.values()) else 1
