"""`lightning benchmark model|tracker|data`: speed figures as tables, JSON and ratios measured in one run.

    lightning benchmark model --config configs/ostrack_256.yaml [--precision bf16] [--backend onnxruntime]
    lightning benchmark tracker --config configs/ostrack_256.yaml --precisions fp32 bf16 int8   (whole online step)
    lightning benchmark model --compare configs/ostrack_256.yaml configs/mixformerv2_b.yaml
    lightning benchmark model --compare configs/ostrack_256.yaml configs/ostrack_256.yaml@bf16 configs/ostrack_256.yaml@int8
    lightning benchmark model --compare configs/a.yaml,configs/presets/cpu_smoke.yaml ...   (comma = composed)
    (entries are built first, then timed in turns of --turn calls: ratios of one run hold on a shared machine)
    lightning benchmark data --config configs/mixformerv2_b.yaml --config configs/presets/cpu_smoke.yaml
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lightning_app.commands.benchmark_entries import Entry, add_entry_arguments, entries_from_args
from lightning_app.config_loading import build_model_from_configs
from trackers.errors import SetupError
from trackers.evaluation.speed import DEFAULT_TURN, SpeedReport, resolve_device, speed_reports
from trackers.inference.online import CropTracker
from trackers.inference.runtime import DEFAULT_BACKEND, DEFAULT_PRECISION, apply_runtime, check_runtime, runtime_suffix

# Untimed and timed per-frame calls (also `lightning pipeline`'s, which times every stage's model).
LATENCY_WARMUP, LATENCY_ITERS = 20, 100


def per_frame_call(module, device: torch.device, precision: str = DEFAULT_PRECISION,
                   backend: str = DEFAULT_BACKEND, fp32_linear: str | None = None):
    """The network call a tracker makes per frame (template work cached at initialisation), at ``precision``
    on ``backend`` (``trackers.inference.runtime``; ``fp32_linear``: fp32's Linear engine, default the CPU's)."""
    module.to(device).eval()  # before build_tracker: trackers cache device tensors (e.g. the CE template mask)
    tracker = module.build_tracker()
    if not isinstance(tracker, CropTracker):
        raise SetupError(f"{type(module).__name__} has no network to benchmark")
    network = tracker.network  # parameters are counted on the model, whatever runs it
    tracker = apply_runtime(tracker, precision, backend, fp32_linear)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, size=(480, 640, 3), dtype=np.uint8)
    tracker.initialize(frame, np.array([280.0, 200.0, 80.0, 60.0]))
    search = torch.randn(1, 3, tracker.search_size, tracker.search_size, device=device)
    return network, (lambda: tracker.predict(search))


def check_latency_calls(warmup: int, iters: int) -> None:
    if iters < 1 or warmup < 0:
        raise SetupError(f"--iters must be >= 1 and --warmup >= 0, got {iters} and {warmup}")


def benchmark_model(entries: list[Entry], device: torch.device, warmup: int, iters: int,
                    turn: int = DEFAULT_TURN) -> list[SpeedReport]:
    """Every entry built first, then their per-frame calls timed in turns of ``turn`` calls."""
    timed = []
    for entry in entries:
        check_runtime(entry.precision, entry.backend, device, entry.fp32_linear)  # every refusal before building
    for entry in entries:
        module = build_model_from_configs(entry.configs)
        network, call = per_frame_call(module, device, entry.precision, entry.backend, entry.fp32_linear)
        fp32_call = call if runtime_suffix(entry.precision, entry.backend) == "" else per_frame_call(module, device)[1]
        timed.append((entry.label, network, call, fp32_call))
    turns = f", in turns of {turn} calls" if turn and len(entries) > 1 else ""
    with tqdm(total=len(entries) * iters, unit="call", desc=f"timing {len(entries)} model(s){turns}",
              disable=len(entries) * iters < 50) as bar:
        return speed_reports(timed, device, warmup, iters, turn, bar.update)


def format_table(reports: list[SpeedReport]) -> str:
    ref = reports[0]
    w = max([40] + [len(r.name) for r in reports])
    header = f"{'model':<{w}} {'params(M)':>10} {'GMACs':>8} {'GFLOPs':>8} {'median ms':>10} {'p90 ms':>8} {'FPS':>8} {'speed-up':>9}"
    rows = [header, "-" * len(header)]
    for r in reports:
        rows.append(
            f"{r.name:<{w}} {r.params_m:>10.3f} {r.gmacs:>8.2f} {r.gflops:>8.2f} {r.latency_ms_median:>10.2f}"
            f" {r.latency_ms_p90:>8.2f} {r.fps:>8.1f} {ref.latency_ms_median / r.latency_ms_median:>8.2f}x"
        )
    if len(reports) > 1:
        rows.append(f"ratios are against '{ref.name}', measured in this run on {ref.device}")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lightning benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    model = sub.add_parser("model", help="params, GFLOPs and batch-1 latency of the per-frame network call")
    add_entry_arguments(model, "models")
    model.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    model.add_argument("--warmup", type=int, default=LATENCY_WARMUP)
    model.add_argument("--iters", type=int, default=LATENCY_ITERS)
    model.add_argument("--turn", type=int, default=DEFAULT_TURN,
                       help="entries take turns of this many calls, so a slow phase of the machine falls on all "
                            "alike (0: one entry after the other)")
    model.add_argument("--json", type=Path, help="write the reports as JSON here")
    model.add_argument("--frames", type=int, default=100,
                       help="early-exit models (DyTrack): real frames of the config's test benchmark to time")
    model.add_argument("--ckpt_path", help="early-exit models: trained weights for the real-frame timing")
    sub.add_parser("tracker", help="end-to-end FPS of the whole online step on real frames, and the "
                                             "network's share (`lightning benchmark tracker --help`)", add_help=False)
    data = sub.add_parser("data", help="samples/s per worker of the data pipeline vs a straightforward reference")
    data.add_argument("--config", action="append", default=[], required=True)
    data.add_argument("--samples", type=int, default=200)
    data.add_argument("--json", type=Path)
    if argv[:1] == ["tracker"]:
        from lightning_app.commands.benchmark_tracker import main as benchmark_tracker

        return benchmark_tracker(argv[1:])
    args = parser.parse_args(argv)

    if args.what == "data":
        from lightning_app.commands.benchmark_data import run_data_benchmark

        result = run_data_benchmark(args.config, num_samples=args.samples)
        print(result.table())
        if args.json:
            args.json.write_text(json.dumps(result.as_dict(), indent=2))
        return 0

    entries = entries_from_args(args)
    if not entries:
        parser.error("give --config and/or --compare")
    check_latency_calls(args.warmup, args.iters)
    if args.turn < 0:
        raise SetupError(f"--turn must be >= 0, got {args.turn}")
    reports = benchmark_model(entries, resolve_device(args.device), args.warmup, args.iters, args.turn)
    print(format_table(reports))
    early_exit = early_exit_section(entries, resolve_device(args.device), args.warmup, args.iters, args.frames,
                                    args.ckpt_path)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.as_dict() for r in reports] + early_exit, indent=2))
    return 0


def early_exit_section(entries: list[Entry], device: torch.device, warmup: int, iters: int, frames: int,
                       ckpt_path: str | None) -> list[dict]:
    """DyTrack's per-exit latency and real-frame speed-up over always-deepest (``lightning_app.commands.calibrate``)."""
    from dataclasses import asdict

    from lightning_app.commands.calibrate import early_exit_timing

    timings = [t for e in entries
               if (t := early_exit_timing(e.configs, device, warmup, iters, frames, ckpt_path, e.precision, e.backend))]
    for timing in timings:
        print(timing.table())
    return [{**asdict(t), "ratio": t.ratio} for t in timings]
