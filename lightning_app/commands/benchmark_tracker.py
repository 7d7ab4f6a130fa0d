"""`lightning benchmark tracker`: end-to-end FPS of the whole online step on real frames, and the network's share.

    lightning benchmark tracker --config configs/ostrack_256.yaml --precisions fp32 bf16 int8
    lightning benchmark tracker --config configs/mixformerv2_s_score.yaml --compare configs/compresstracker_4.yaml
    lightning benchmark tracker --compare configs/ostrack_256.yaml configs/ostrack_256.yaml@bf16 \\
        configs/ostrack_256.yaml,configs/presets/cpu_smoke.yaml@int8

An ENTRY is one or more configs (comma = composed, later ones override) with an optional
``@PRECISION`` or ``@PRECISION/BACKEND`` (``@bf16``, ``@int8``, ``@fp32/onnxruntime``); entries without
one run at ``--precision`` / ``--backend``. ``--precisions P ...`` runs every entry at each of them.

Every entry tracks the same real frames (the first sequences of the first entry's test benchmark,
``data.init_args.test``; SynthTrack in the presets), decoded into memory before timing: per frame,
the whole ``tracker.track`` (crop, normalise, network, decode, window, map back, template update)
and, inside it, the time spent in the network's calls. The first ``--warmup`` frames are untimed.
Every entry is built first; then they take turns of ``--turn`` frames, so a slow phase of a shared
machine falls on all of them. FPS is 1000 / median ms; ratios are against the first entry, measured
in this run. The JSON (a
list of records: name, precision, backend, device, fps, network_fps, end_to_end / network
percentiles, overhead_share, environment, ...) goes to ``--json``, default ``tracker_speed.json`` in
the first entry's results folder (next to the ``metrics.json`` of its `lightning test` run).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lightning_app.commands.benchmark_entries import Entry, add_entry_arguments, entries_from_args
from lightning_app.commands.track import check_weights_file, load_module_weights
from lightning_app.config_loading import build_from_configs, parse_configs
from trackers.errors import SetupError
from trackers.evaluation.protocols import benchmark_key
from trackers.evaluation.speed import (DEFAULT_TURN, TimedNetwork, environment, latency_summary, resolve_device,
                                      take_turns)
from trackers.inference.online import CropTracker
from trackers.inference.runtime import apply_runtime, check_runtime, fp32_linear_in_use
from trackers.methods.base import results_folder

DEFAULT_FRAMES, DEFAULT_WARMUP = 200, 10
JSON_NAME = "tracker_speed.json"


@dataclass
class Clip:
    """Decoded frames of one sequence and its first box (decoding stays outside the timing)."""

    frames: list[np.ndarray]
    init_box: np.ndarray


@dataclass
class Measurement:
    end_to_end_ms: list[float] = field(default_factory=list)
    network_ms: list[float] = field(default_factory=list)


def load_clips(datamodule, total_frames: int) -> tuple[str, list[Clip]]:  # noqa: ANN001 - TrackingDataModule
    """The benchmark key and enough whole sequences (in order) of the test set for ``total_frames`` steps."""
    spec = getattr(datamodule, "test", None)
    if spec is None:
        raise SetupError("data.init_args.test is not set; `benchmark tracker` times real frames of the test benchmark "
                         "(compose configs/presets/cpu_smoke.yaml for SynthTrack)")
    datamodule.check_roots("test")
    datamodule.setup("test")
    clips, steps = [], 0
    for i in range(len(datamodule.test_set)):
        if steps >= total_frames:
            break
        sequence = datamodule.test_set[i]
        count = min(len(sequence), total_frames - steps + 1)
        if count < 2:
            continue
        clips.append(Clip([sequence.load_frame(j) for j in range(count)],
                          np.asarray(sequence.gt_boxes[0], dtype=np.float64)))
        steps += count - 1
    if not clips:
        raise SetupError(f"data.init_args.test ({spec.type} {spec.split}) has no sequence of 2 frames or more to time")
    return benchmark_key(spec.type, spec.split, spec.root), clips


def tracker_steps(tracker: CropTracker, clips: list[Clip]) -> Iterator[tuple[float, float]]:
    """(ms of ``tracker.track``, ms of the network calls inside it) for each step over the clips, in order;
    initialisation is untimed. The network is wrapped while the generator runs."""
    timed = TimedNetwork(tracker.network, tracker.device)
    tracker.network = timed
    try:
        for clip in clips:
            tracker.initialize(clip.frames[0], clip.init_box)
            for frame in clip.frames[1:]:
                timed.take()
                start = time.perf_counter()
                tracker.track(frame)
                elapsed = time.perf_counter() - start
                yield elapsed * 1e3, timed.take() * 1e3
    finally:
        tracker.network = timed.inner


def time_trackers(trackers: list[CropTracker], clips: list[Clip], warmup: int, turn: int,
                  on_steps: Callable[[int], object] = lambda n: None) -> list[Measurement]:
    """Every tracker's steps over the clips, the first ``warmup`` of each untimed, taken in turns of ``turn``
    frames (:func:`trackers.evaluation.speed.take_turns`); ``turn`` 0: one tracker after the other."""
    steps = take_turns([tracker_steps(t, clips) for t in trackers], warmup, turn, on_items=on_steps)
    return [Measurement([e for e, _ in s], [n for _, n in s]) for s in steps]


def build_tracker(entry: Entry, device: torch.device, ckpt_path: str | None):  # noqa: ANN201
    """(module, datamodule, tracker) of an entry, weights from ``ckpt_path``, at its precision/backend."""
    check_runtime(entry.precision, entry.backend, device, entry.fp32_linear)
    module, datamodule = build_from_configs(entry.configs)
    if ckpt_path:
        load_module_weights(module, ckpt_path)
    module.to(device).eval()
    tracker = module.build_tracker()
    if not isinstance(tracker, CropTracker):
        raise SetupError(f"{' + '.join(entry.configs)}: {type(module).__name__}'s tracker has no network to time")
    module.set_runtime(entry.precision, entry.backend)
    return module, datamodule, apply_runtime(tracker, entry.precision, entry.backend, entry.fp32_linear)


def speed_record(entry: Entry, module, tracker: CropTracker, measured: Measurement, benchmark: str,  # noqa: ANN001
                 device: torch.device, frames: int, warmup: int) -> tuple[dict, Path]:
    """The speed record of one entry and its results folder."""
    if not measured.end_to_end_ms:
        raise SetupError(f"--frames {frames} --warmup {warmup}: no frame left to time; raise --frames")
    end_to_end, network = latency_summary(measured.end_to_end_ms), latency_summary(measured.network_ms)
    name = module.result_name(tracker)
    root = parse_configs(entry.configs).get("trainer.default_root_dir") or "."
    record = {
        "name": name,
        "label": entry.label,
        "configs": list(entry.configs),
        "precision": entry.precision,
        "backend": entry.backend,
        "fp32_linear": fp32_linear_in_use(entry.precision, entry.backend, device, entry.fp32_linear),
        "device": str(device),
        "benchmark": benchmark,
        "frames": len(measured.end_to_end_ms),
        "fps": 1e3 / end_to_end["median_ms"],
        "network_fps": 1e3 / network["median_ms"],
        "end_to_end": end_to_end,
        "network": network,
        "overhead_share": 1.0 - sum(measured.network_ms) / sum(measured.end_to_end_ms),
        "environment": environment(device),
    }
    return record, results_folder(module.results_dir, root, benchmark, name)


def add_ratios(records: list[dict]) -> None:
    """Speed-ups over the first record (end to end and network only), measured in the same run."""
    ref = records[0]
    for r in records:
        r["speedup"] = ref["end_to_end"]["median_ms"] / r["end_to_end"]["median_ms"]
        r["network_speedup"] = ref["network"]["median_ms"] / r["network"]["median_ms"]


def format_table(records: list[dict]) -> str:
    w = max([44] + [len(r["label"]) for r in records])
    header = (f"{'tracker':<{w}} {'median ms':>9} {'p10':>7} {'p90':>7} {'p99':>7} {'FPS':>7} {'net FPS':>8}"
              f" {'outside net':>11} {'speed-up':>8} {'net x':>6}")
    rows = [header, "-" * len(header)]
    for r in records:
        e = r["end_to_end"]
        rows.append(f"{r['label']:<{w}} {e['median_ms']:>9.2f} {e['p10_ms']:>7.2f} {e['p90_ms']:>7.2f} "
                    f"{e['p99_ms']:>7.2f} {r['fps']:>7.1f} {r['network_fps']:>8.1f} {r['overhead_share']:>10.1%} "
                    f"{r['speedup']:>7.2f}x {r['network_speedup']:>5.2f}x")
    env = records[0]["environment"]
    rows.append(f"{records[0]['frames']} frames of {records[0]['benchmark']} per tracker on {records[0]['device']}; "
                f"ratios against '{records[0]['label']}', measured in this run")
    isa = (f" ({', '.join(env['cpu_isa'])}; int8 engine {env['int8_engine']}; fp32 Linear "
           f"{env.get('fp32_linear', 'torch')})" if env.get("cpu_isa") else "")
    rows.append(f"environment: {env['cpu']}{isa}, {env['torch_threads']} torch threads of {env['cpu_count']} CPUs, "
                f"torch {env['torch']}" + (f", {env['gpu']} (CUDA {env['cuda']})" if env["gpu"] else ""))
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightning benchmark tracker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_entry_arguments(parser, "trackers")
    parser.add_argument("--ckpt_path", help="weights for every entry (Lightning .ckpt or official .pth.tar); "
                                            "default: untrained (fine for speed)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="timed frames per tracker")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed frames first")
    parser.add_argument("--turn", type=int, default=DEFAULT_TURN,
                        help="entries take turns of this many frames, so a slow phase of the machine falls on all "
                             "alike (0: one entry after the other)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help=f"write the records here (default: {JSON_NAME} in the first "
                                                  "entry's results folder)")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    entries = entries_from_args(args)
    if not entries:
        parser.error("give --config and/or --compare")
    if args.frames < 1 or args.warmup < 0 or args.turn < 0:
        raise SetupError(f"--frames must be >= 1, --warmup and --turn >= 0, got {args.frames}, {args.warmup} and "
                         f"{args.turn}")
    if args.ckpt_path:
        check_weights_file(args.ckpt_path, "--ckpt_path")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    for entry in entries:
        check_runtime(entry.precision, entry.backend, device, entry.fp32_linear)  # every refusal before any timing
    built = [build_tracker(entry, device, args.ckpt_path) for entry in entries]
    benchmark, clips = load_clips(built[0][1], args.frames + args.warmup)  # the first entry's frames, for all
    steps = sum(len(c.frames) - 1 for c in clips)
    if steps <= args.warmup:  # one line before any frame is timed
        raise SetupError(f"--frames {args.frames} --warmup {args.warmup}: the test benchmark has {steps} steps to "
                         f"track, none left to time; lower --warmup")
    turns = f", in turns of {args.turn} frames" if args.turn and len(entries) > 1 else ""
    with torch.inference_mode(), tqdm(total=len(entries) * max(steps - args.warmup, 0), unit="frame",
                                      desc=f"timing {len(entries)} tracker(s) on {benchmark}{turns}") as bar:
        measured = time_trackers([tracker for _, _, tracker in built], clips, args.warmup, args.turn, bar.update)
    records, folders = [], []
    for entry, (module, _, tracker), measurement in zip(entries, built, measured):
        record, folder = speed_record(entry, module, tracker, measurement, benchmark, device, args.frames,
                                      args.warmup)
        records.append(record)
        folders.append(folder)
    add_ratios(records)
    print(format_table(records))
    path = args.json or folders[0] / JSON_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=2))
    print(f"speed records: {path}")
    return 0
