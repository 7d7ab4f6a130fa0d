"""`lightning calibrate`: DyTrack's speed-accuracy curve from one trained model, and thresholds picked from it.

    lightning calibrate --config configs/dytrack_256.yaml --config configs/benchmarks/got10k_val.yaml \\
        --ckpt_path run.ckpt [--thresholds 0.5 0.6 0.7 0.8 0.9 0.95] [--max-auc-loss 1.0 | --target-speedup 2]

Every point is a full online (OPE) run of the validation benchmark (``data.init_args.test``) with one
threshold setting: early exits change later search crops, so nothing is extrapolated from per-exit
logs (spec §10.12). The points are: every exit forced (always-first ... always-deepest), and each
swept threshold applied to every shallow exit (or the per-exit vectors of ``--per-exit``). For each:
AUC, measured FPS (mean time per tracked frame, batch 1, pre-processing excluded as in `test`), mean
GFLOPs per frame (the exit mix times each exit's counted FLOPs), mean executed depth and the exit
distribution. Written to ``<out>/calibration.{csv,json,png}`` (AUC vs FPS and vs mean GFLOPs).

The pick: the fastest point within ``--max-auc-loss`` AUC points of always-deepest (default 1.0), or
the most accurate point at ``--target-speedup`` or more over always-deepest (measured FPS ratio; the
GFLOPs ratio with ``--speedup-by flops``). The chosen point is run once more (``--confirm``, default
on) and its confirmed AUC and FPS are reported with the config line to use it. Pick thresholds on a
validation set, never on the test benchmarks.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lightning_app.config_loading import build_from_configs
from trackers.errors import SetupError
from trackers.evaluation.protocols import benchmark_key, metrics_for
from trackers.evaluation.speed import resolve_device
from trackers.inference.dytrack_tracker import NEVER_EXIT, DyTrackTracker
from trackers.inference.ope import run_sequence
from trackers.inference.runtime import DEFAULT_BACKEND, DEFAULT_PRECISION, apply_runtime, runtime_suffix
from trackers.methods.dytrack import per_exit_flops
from trackers.safe_unpickling import load_checkpoint_data

DEFAULT_SWEEP = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)  # spec §3: 0.50 ... 0.95
DEFAULT_MAX_AUC_LOSS = 1.0
HEADLINE_KEYS = ("AUC", "AO", "Success")  # pytracking / GOT-10k / TrackingNet conventions
OUTPUT_NAME = "calibration"


@dataclass
class CurvePoint:
    label: str
    thresholds: list[float]
    auc: float
    fps: float
    mean_gflops: float
    mean_depth: float
    exit_share: list[float]
    speedup: float = 1.0  # measured FPS over always-deepest's
    flops_speedup: float = 1.0  # always-deepest GFLOPs over this point's


def forced_exit_thresholds(exit_index: int, num_exits: int) -> list[float]:
    """Thresholds that make every frame answer at ``exit_index``: never before it, always there."""
    return [NEVER_EXIT if j < exit_index else -math.inf for j in range(num_exits - 1)]


def sweep_settings(num_exits: int, sweep: list[float], per_exit: list[list[float]]) -> list[tuple[str, list[float]]]:
    """(label, thresholds) of every point: each exit forced, then the sweep, then explicit vectors."""
    settings = [(f"always exit {k} ({'first' if k == 0 else 'deepest' if k == num_exits - 1 else 'forced'})",
                 forced_exit_thresholds(k, num_exits)) for k in range(num_exits)]
    settings += [(f"tau={t:g}", [float(t)] * (num_exits - 1)) for t in sweep]
    for vector in per_exit:
        if len(vector) != num_exits - 1:
            raise SetupError(f"--per-exit {vector}: give {num_exits - 1} thresholds (one per shallow exit)")
        settings.append(("tau=" + "/".join(f"{t:g}" for t in vector), [float(t) for t in vector]))
    return settings


def headline(scores: dict[str, dict[str, float]]) -> float:
    for convention in ("pytracking", *scores):
        for key in HEADLINE_KEYS:
            if key in scores.get(convention, {}):
                return float(scores[convention][key])
    raise SetupError("the benchmark has no local success score (it is scored by its server); calibrate on a "
                     "validation set with ground truth, e.g. --config configs/benchmarks/got10k_val.yaml")


def run_point(tracker: DyTrackTracker, sequences, benchmark: str, label: str, thresholds: list[float],  # noqa: ANN001
              flops: list[float]) -> CurvePoint:
    """One full online run of every sequence with ``thresholds``."""
    tracker.set_thresholds(thresholds)
    tracker.reset_counts()
    metrics = metrics_for(benchmark)
    times = []
    for sequence in sequences:
        run = run_sequence(tracker, sequence, sequence.gt_boxes[0])
        times.append(run.times[1:])
        for metric in metrics.values():
            metric.update(run.boxes, sequence.gt_boxes, sequence.visible, sequence.image_size, sequence.name)
    scores = {name: {k: float(v) for k, v in metric.compute().items()} for name, metric in metrics.items()}
    share = tracker.exit_counts / max(int(tracker.exit_counts.sum()), 1)
    all_times = np.concatenate(times) if times else np.zeros(0)
    return CurvePoint(
        label=label,
        thresholds=[float(t) for t in thresholds],
        auc=headline(scores),
        fps=float(1.0 / all_times.mean()) if all_times.size else float("nan"),
        mean_gflops=float((share * np.asarray(flops)).sum() / 1e9),
        mean_depth=float((share * np.asarray(tracker.network.exits, dtype=np.float64)).sum()),
        exit_share=share.tolist(),
    )


def add_speedups(points: list[CurvePoint], deepest: CurvePoint) -> None:
    for p in points:
        p.speedup = p.fps / deepest.fps
        p.flops_speedup = deepest.mean_gflops / p.mean_gflops


def pick(points: list[CurvePoint], deepest: CurvePoint, max_auc_loss: float | None, target_speedup: float | None,
         speedup_by: str) -> CurvePoint | None:
    """The fastest point within the AUC loss, or the most accurate one reaching the speed-up."""
    speed = (lambda p: p.speedup) if speedup_by == "fps" else (lambda p: p.flops_speedup)
    if target_speedup is not None:
        fast = [p for p in points if speed(p) >= target_speedup]
        return max(fast, key=lambda p: (p.auc, speed(p))) if fast else None
    loss = DEFAULT_MAX_AUC_LOSS if max_auc_loss is None else max_auc_loss
    good = [p for p in points if p.auc >= deepest.auc - loss]
    return max(good, key=lambda p: (speed(p), p.auc)) if good else None


NEVER_EXIT_SPELLED, ALWAYS_EXIT_SPELLED = 2.0, 0.0
"""How a command line spells the infinite thresholds (jsonargparse refuses inf there): IoU scores lie in
[0, 1], so 2 is never reached and 0 always is."""


def yaml_list(values: list[float]) -> str:
    """A threshold list as a command-line value (infinities as the equivalent 2 / 0)."""
    spelled = [(NEVER_EXIT_SPELLED if v > 0 else ALWAYS_EXIT_SPELLED) if math.isinf(v) else v for v in values]
    return "[" + ", ".join(f"{v:g}" for v in spelled) + "]"


def format_table(points: list[CurvePoint], exits: tuple[int, ...]) -> str:
    header = (f"{'point':<28} {'AUC':>6} {'FPS':>8} {'speed-up':>8} {'GFLOPs':>8} {'flops x':>7} {'depth':>6}  "
              f"exit share ({'/'.join(map(str, exits))} blocks)")
    rows = [header, "-" * len(header)]
    for p in points:
        share = "/".join(f"{100 * s:.0f}%" for s in p.exit_share)
        rows.append(f"{p.label:<28} {p.auc:>6.2f} {p.fps:>8.1f} {p.speedup:>7.2f}x {p.mean_gflops:>8.3f} "
                    f"{p.flops_speedup:>6.2f}x {p.mean_depth:>6.2f}  {share}")
    return "\n".join(rows)


def write_outputs(out: Path, points: list[CurvePoint], chosen: CurvePoint | None, confirmed: CurvePoint | None,
                  meta: dict) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path, png_path = (out / f"{OUTPUT_NAME}.{ext}" for ext in ("csv", "json", "png"))
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(points[0])))
        writer.writeheader()
        for p in points:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in asdict(p).items()})
    record = {**meta, "points": [asdict(p) for p in points],
              "chosen": asdict(chosen) if chosen else None, "confirmed": asdict(confirmed) if confirmed else None}
    json_path.write_text(json.dumps(record, indent=2))
    plot_curve(points, chosen, png_path, meta.get("benchmark", ""))
    return [csv_path, json_path, png_path]


def plot_curve(points: list[CurvePoint], chosen: CurvePoint | None, path: Path, title: str) -> None:
    """AUC vs measured FPS and AUC vs mean GFLOPs, one marker per point (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(fig)
    for ax, key, xlabel in zip(fig.subplots(1, 2), ("fps", "mean_gflops"), ("measured FPS", "mean GFLOPs per frame")):
        sweep = [p for p in points if p.label.startswith("tau")]
        forced = [p for p in points if not p.label.startswith("tau")]
        ax.plot([getattr(p, key) for p in sweep], [p.auc for p in sweep], "o-", label="threshold sweep")
        ax.plot([getattr(p, key) for p in forced], [p.auc for p in forced], "s", label="forced exit")
        for p in points:
            ax.annotate(p.label.replace("always exit ", "exit "), (getattr(p, key), p.auc), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
        if chosen is not None:
            ax.plot([getattr(chosen, key)], [chosen.auc], "*", markersize=14, label="chosen")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("AUC [%]")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"DyTrack speed-accuracy curve {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def load_trained(configs: list[str], overrides: list[str], ckpt_path: str | None):  # noqa: ANN201
    """The model (weights from ``ckpt_path``, restored as `--ckpt_path` does) and its data module."""
    module, datamodule = build_from_configs(configs, overrides)
    if ckpt_path:
        if not Path(ckpt_path).is_file():
            raise SetupError(f"--ckpt_path {ckpt_path} does not exist; pass a DyTrack checkpoint (.ckpt)")
        checkpoint = load_checkpoint_data(ckpt_path)
        module.on_load_checkpoint(checkpoint)
        module.load_state_dict(checkpoint["state_dict"])
    return module, datamodule


def calibrate(args: argparse.Namespace) -> dict:
    overrides = list(args.override)
    module, datamodule = load_trained(args.config, overrides, args.ckpt_path)
    if getattr(getattr(module, "network", None), "exits", None) is None:
        raise SetupError(f"{type(module).__name__} is not a DyTrack model; calibrate needs model: DyTrackTraining")
    datamodule.check_roots("test")
    datamodule.setup("test")
    spec = datamodule.test
    benchmark = benchmark_key(spec.type, spec.split, spec.root)
    sequences = [datamodule.test_set[i] for i in range(len(datamodule.test_set))]
    module.to(resolve_device(args.device)).eval()
    tracker = module.build_tracker()
    if not isinstance(tracker, DyTrackTracker):
        raise SetupError("the model's tracker is not DyTrack's early-exit tracker")
    flops = per_exit_flops(tracker)
    num_exits = tracker.network.num_exits
    points = []
    for label, thresholds in sweep_settings(num_exits, list(args.thresholds), [list(v) for v in args.per_exit]):
        point = run_point(tracker, sequences, benchmark, label, thresholds, flops)
        print(f"  {label}: AUC {point.auc:.2f}, {point.fps:.1f} FPS, {point.mean_gflops:.3f} GFLOPs/frame", flush=True)
        points.append(point)
    deepest = points[num_exits - 1]
    add_speedups(points, deepest)
    chosen = pick(points, deepest, args.max_auc_loss, args.target_speedup, args.speedup_by)
    confirmed = None
    if chosen is not None and args.confirm:
        confirmed = run_point(tracker, sequences, benchmark, f"{chosen.label} (confirmed)", chosen.thresholds, flops)
        add_speedups([confirmed], deepest)
    meta = {"benchmark": benchmark, "sequences": len(sequences), "exits": list(tracker.network.exits),
            "gflops_per_exit": [f / 1e9 for f in flops], "configs": args.config, "ckpt_path": args.ckpt_path,
            "max_auc_loss": args.max_auc_loss, "target_speedup": args.target_speedup, "speedup_by": args.speedup_by}
    out = args.out or (Path(args.ckpt_path).parent if args.ckpt_path else Path("outputs")) / OUTPUT_NAME
    paths = write_outputs(out, points, chosen, confirmed, meta)
    print(format_table(points + ([confirmed] if confirmed else []), tracker.network.exits))
    print(f"speed-ups are against '{deepest.label}', measured in this run on {args.device}; {len(sequences)} "
          f"sequences of {benchmark}")
    if chosen is None:
        print("no point meets the target; relax --max-auc-loss / --target-speedup")
    else:
        final = confirmed or chosen
        print(f"chosen: {chosen.label}: AUC {final.auc:.2f} ({final.auc - deepest.auc:+.2f} vs always-deepest), "
              f"{final.speedup:.2f}x measured, {final.flops_speedup:.2f}x by FLOPs")
        print(f"use it with: --model.init_args.tracker.thresholds '{yaml_list(chosen.thresholds)}'")
    print("wrote " + ", ".join(map(str, paths)))
    return {"points": points, "chosen": chosen, "confirmed": confirmed}


# ---------------------------------------------------------------------- `lightning benchmark model` on DyTrack


@dataclass
class EarlyExitTiming:
    """Per-exit latency (a frame forced to answer at each exit) and real-frame latency at the configured
    thresholds vs always-deepest, on the same frames in the same run."""

    name: str
    exits: list[int]
    thresholds: list[float]
    per_exit_ms: list[float]
    frames: int
    exit_share: list[float]
    mean_ms: float
    deepest_mean_ms: float
    device: str

    @property
    def ratio(self) -> float:
        return self.deepest_mean_ms / self.mean_ms

    def table(self) -> str:
        per_exit = ", ".join(f"exit after {d} blocks {ms:.2f} ms" for d, ms in zip(self.exits, self.per_exit_ms))
        share = "/".join(f"{100 * s:.0f}%" for s in self.exit_share)
        return (f"{self.name}: per-exit latency (median): {per_exit}\n"
                f"{self.name}: {self.frames} real frames at thresholds {self.thresholds}: mean {self.mean_ms:.2f} ms "
                f"(exit share {share}) vs always-deepest {self.deepest_mean_ms:.2f} ms: {self.ratio:.2f}x faster, "
                f"measured in this run on {self.device}")


def is_early_exit(module) -> bool:  # noqa: ANN001
    return getattr(getattr(module, "network", None), "exits", None) is not None


def _real_frame_latencies(tracker: DyTrackTracker, sequence, frames: int, thresholds) -> tuple[list[float], np.ndarray]:  # noqa: ANN001
    """Network latency of each tracked frame (crop excluded) over the first ``frames`` frames."""
    tracker.set_thresholds(thresholds)
    tracker.reset_counts()
    tracker.initialize(sequence.load_frame(0), np.asarray(sequence.gt_boxes[0], dtype=np.float64))
    times = []
    for i in range(1, min(frames + 1, len(sequence))):
        tracker.track(sequence.load_frame(i))
        times.append(tracker.last_latency_s * 1e3)
    return times, tracker.exit_counts / max(int(tracker.exit_counts.sum()), 1)


def early_exit_timing(configs: list[str], device: torch.device, warmup: int, iters: int, frames: int,
                      ckpt_path: str | None = None, precision: str = DEFAULT_PRECISION,
                      backend: str = DEFAULT_BACKEND) -> EarlyExitTiming | None:
    """DyTrack's timing section of `lightning benchmark model` (None for other models), at ``precision`` on
    ``backend`` like the section above it.

    Real frames: the first sequence of the config's ``data.init_args.test`` benchmark, tracked
    (content decides the exits) once at the configured thresholds and once always-deepest; the
    warm-up frames are the same sequence's, untimed.
    """
    from trackers.evaluation.speed import measure_latency

    module, datamodule = load_trained(configs, [], ckpt_path)
    if not is_early_exit(module):
        return None
    module.to(device).eval()
    tracker = apply_runtime(module.build_tracker(), precision, backend)
    configured = list(tracker.thresholds)
    datamodule.check_roots("test")
    datamodule.setup("test")
    if not len(datamodule.test_set):
        raise SetupError("data.init_args.test has no sequences; DyTrack's timing tracks real frames from it")
    sequence = datamodule.test_set[0]
    tracker.initialize(sequence.load_frame(0), np.asarray(sequence.gt_boxes[0], dtype=np.float64))
    search = torch.randn(1, 3, tracker.search_size, tracker.search_size, device=device)
    num_exits = tracker.network.num_exits
    per_exit = [float(np.median(measure_latency(lambda k=k: tracker.run_exits(search, force_exit=k), device,
                                                warmup, iters))) for k in range(num_exits)]
    _real_frame_latencies(tracker, sequence, min(warmup, frames), configured)  # untimed warm-up
    chosen, share = _real_frame_latencies(tracker, sequence, frames, configured)
    deepest, _ = _real_frame_latencies(tracker, sequence, frames, [NEVER_EXIT] * (num_exits - 1))
    return EarlyExitTiming(
        name=" + ".join(Path(c).stem for c in configs) + runtime_suffix(precision, backend),
        exits=list(tracker.network.exits), thresholds=configured,
        per_exit_ms=per_exit, frames=len(chosen), exit_share=share.tolist(), mean_ms=float(np.mean(chosen)),
        deepest_mean_ms=float(np.mean(deepest)), device=str(device),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightning calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", required=True, help="experiment YAML (repeat to compose)")
    parser.add_argument("--ckpt_path", help="the trained DyTrack checkpoint")
    parser.add_argument("--thresholds", type=float, nargs="*", default=list(DEFAULT_SWEEP),
                        help="thresholds to sweep, each applied to every shallow exit")
    parser.add_argument("--per-exit", type=lambda s: [float(t) for t in s.split(",")], action="append", default=[],
                        help="one more point with one threshold per shallow exit, e.g. 0.8,0.9 (repeatable)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--max-auc-loss", type=float, help=f"pick the fastest point within this AUC loss "
                                                           f"(default {DEFAULT_MAX_AUC_LOSS})")
    target.add_argument("--target-speedup", type=float, help="pick the most accurate point at this speed-up or more")
    parser.add_argument("--speedup-by", choices=("fps", "flops"), default="fps",
                        help="measured FPS ratio (default) or mean-GFLOPs ratio")
    parser.add_argument("--no-confirm", dest="confirm", action="store_false",
                        help="do not re-run the chosen point")
    parser.add_argument("--override", action="append", default=[],
                        help="a fit-style argument, e.g. --override=--data.init_args.test.max_sequences=5")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, help="output folder (default: calibration/ beside the checkpoint)")
    return parser


def main(argv: list[str]) -> int:
    calibrate(build_parser().parse_args(argv))
    return 0
