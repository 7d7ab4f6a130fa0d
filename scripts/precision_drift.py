"""Is a reduced-precision AUC loss the arithmetic, or the chaos of an online run? Three measurements on one
family's trained miniature model over a SynthTrack test split:

1. *Teacher-forced error*: the fp32 tracker runs online; on every frame the other runtime's network sees the
   same search crop (and template updates from fp32's box and score), and its box is compared with fp32's
   (crop pixels). This is the error on exactly the crops the tracker meets, drifting ones included.
2. *Online AUC* of fp32 and of the runtime.
3. *Chaos floor*: fp32 online runs whose predicted box gets Gaussian jitter of the teacher-forced error's
   size (per coordinate, crop pixels), one run per seed. Their spread of AUC around fp32 is what any
   perturbation of that size does to this benchmark; a runtime inside it is not measurably worse.

    python scripts/precision_drift.py --family ostrack --runtimes bf16 int8 --root data/synthtrack_test60 --seeds 5

An fp32 runtime on another engine (``fp32/onnxruntime``: outputs within 1e-4 of PyTorch; ``fp32:onednn``, the
Linear layers through oneDNN) is the null: any AUC difference it shows is the benchmark's sensitivity to
arithmetic, not a loss of precision. The fp32 reference runs torch's own Linear (``--fp32-linear``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from datamodules.readers import build_reader
from datamodules.sequences import EvalSequenceDataset
from lightning_app.commands.track import load_module_weights
from lightning_app.config_loading import build_model_from_configs
from trackers.evaluation.metrics_pytracking import sequence_curves
from trackers.inference.ope import run_sequence
from trackers.inference.runtime import apply_runtime

STAGES = {
    "ostrack": "outputs/compresstracker_mini_ablation/teacher/stage.json",
    "compresstracker": "outputs/compresstracker_mini_ablation/ct2_no_replacement/seed0/stage.json",
    "mixformerv2": "outputs/mixformerv2_mini_ablation/depth_kept_init/seed0/stage.json",
    "dytrack": "outputs/dytrack_mini_ablation/dytrack_kd/seed0/stage.json",
}


def stage_model(family: str) -> tuple[list[str], str]:
    """The configs and checkpoint of a family's trained miniature, from its pipeline stage record."""
    record = json.load(open(STAGES[family]))
    command = record["command"]
    return [command[i + 1] for i, a in enumerate(command) if a == "--config"], record["checkpoint"]


def build_tracker(family: str, precision: str = "fp32", backend: str = "torch", fp32_linear: str | None = None):
    configs, checkpoint = stage_model(family)
    module = build_model_from_configs(configs)
    load_module_weights(module, checkpoint)  # the CE keep rate training ended with, as `lightning test`
    module.eval()
    return apply_runtime(module.build_tracker(), precision, backend, fp32_linear)


def parse_runtime(text: str) -> tuple[str, str, str | None]:
    """``PRECISION[/BACKEND][:FP32_LINEAR_ENGINE]`` -> (precision, backend, engine or None)."""
    runtime, _, engine = text.partition(":")
    precision, _, backend = runtime.partition("/")
    return precision, backend or "torch", engine or None


def run_all(tracker, sequences: EvalSequenceDataset, desc: str) -> tuple[float, np.ndarray]:
    """Online AUC over the split and the per-sequence AUCs (percent), under the LaSOT rules `lightning
    test` scores SynthTrack with."""
    curves = []
    for sequence in tqdm(sequences, desc=desc, unit="seq", leave=False):
        run = run_sequence(tracker, sequence, sequence.gt_boxes[0])
        curves.append(sequence_curves(run.boxes, sequence.gt_boxes, sequence.visible, dataset="lasot").success)
    per_sequence = np.stack(curves).mean(1) * 100  # AUC: the mean of the 21-point success curve
    return float(per_sequence.mean()), per_sequence


def divergence(diff: np.ndarray, threshold: float) -> dict:
    """How much of an AUC difference a few diverging sequences carry: the sequences off by more than
    `threshold` points, lost and gained, and their share of the summed difference."""
    big = np.abs(diff) > threshold
    total = float(diff.sum())
    return {"lost": int((diff < -threshold).sum()), "gained": int((diff > threshold).sum()),
            "share_of_diff": float(diff[big].sum() / total) if total else 0.0,
            "rest_mean": float(diff[~big].mean()) if (~big).any() else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", choices=sorted(STAGES), default="ostrack")
    parser.add_argument("--runtimes", nargs="+", default=["bf16"],
                        help="PRECISION[/BACKEND][:ENGINE] to compare with fp32 (fp32:onednn: Linear through oneDNN)")
    parser.add_argument("--fp32-linear", default="torch", help="the fp32 reference's Linear engine")
    parser.add_argument("--root", default="data/synthtrack_test60")
    parser.add_argument("--seeds", type=int, default=5, help="jittered fp32 runs (the chaos floor); 0: none")
    parser.add_argument("--diverged", type=float, default=10.0, help="AUC points that count a sequence as diverged")
    parser.add_argument("--out", type=Path, default=None, help="JSON with every number")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    reader = EvalSequenceDataset(build_reader("synthtrack", args.root, split="test", config_key=args.root))
    runtimes = [parse_runtime(r) for r in args.runtimes]
    record: dict = {"family": args.family, "root": args.root, "sequences": len(reader)}

    # 1. teacher-forced error along fp32's own trajectory: every runtime's network sees fp32's crops
    reference = build_tracker(args.family, fp32_linear=args.fp32_linear)
    others = {f"{p}/{b}" + (f":{e}" if e else ""): build_tracker(args.family, p, b, e) for p, b, e in runtimes}
    size = reference.search_size
    errors: dict[str, list[float]] = {name: [] for name in others}
    fp32_predict, fp32_initialize = reference.predict, reference.initialize

    def forced(search: torch.Tensor):
        box, score = fp32_predict(search)
        for name, other in others.items():
            errors[name].append(float((other.predict(search)[0].float() - box.float()).abs().max()) * size)
        return box, score

    def initialize(frame, box):
        fp32_initialize(frame, box)
        for other in others.values():
            other.initialize(frame, box)

    fp32_on_tracked = reference.on_tracked

    def on_tracked(frame, score):  # template updates (MixFormerV2) from fp32's box and score, in each runtime
        fp32_on_tracked(frame, score)
        for other in others.values():
            other._state = reference._state.copy()
            other.on_tracked(frame, score)

    reference.predict, reference.initialize, reference.on_tracked = forced, initialize, on_tracked
    fp32_auc, fp32_seq = run_all(reference, reader, "fp32 (teacher-forcing " + ", ".join(others) + ")")
    record["auc"] = {"fp32": fp32_auc}
    record["per_sequence_auc"] = {"fp32": fp32_seq.tolist()}
    record["teacher_forced_px"] = {}
    for name, values in errors.items():
        e = np.asarray(values)
        record["teacher_forced_px"][name] = stats = {
            "mean": float(e.mean()), "p50": float(np.median(e)), "p95": float(np.percentile(e, 95)),
            "p99": float(np.percentile(e, 99)), "max": float(e.max()), "over_1px_percent": float(np.mean(e > 1) * 100),
            "rms": float(np.sqrt(np.mean(e ** 2))), "frames": len(e)}
        print(f"teacher-forced {name} vs fp32 on {len(e)} frames: mean {stats['mean']:.3f} px, p50 {stats['p50']:.3f}, "
              f"p95 {stats['p95']:.3f}, p99 {stats['p99']:.3f}, max {stats['max']:.2f}, "
              f">1 px {stats['over_1px_percent']:.2f}%, rms {stats['rms']:.3f}", flush=True)

    # 2. each runtime online
    for runtime, name in zip(runtimes, others):
        auc, per_sequence = run_all(build_tracker(args.family, *runtime), reader, name)
        se = float(np.std(per_sequence - fp32_seq, ddof=1) / np.sqrt(len(fp32_seq)))
        record["auc"][name] = auc
        record["per_sequence_auc"][name] = per_sequence.tolist()
        record.setdefault("paired_se", {})[name] = se
        record.setdefault("diverged", {})[name] = split = divergence(per_sequence - fp32_seq, args.diverged)
        print(f"online AUC fp32 {fp32_auc:.2f}, {name} {auc:.2f} (diff {auc - fp32_auc:+.2f}, paired SE {se:.2f}); "
              f"sequences off by more than {args.diverged:g}: {split['lost']} lost, {split['gained']} gained, "
              f"carrying {split['share_of_diff'] * 100:.0f}% of the difference", flush=True)

    # every pair of runtimes against each other: both are perturbations of fp32 and independent of its one
    # draw, so a shift that two runtimes share against fp32 but not against each other is fp32's own luck
    names = list(others)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            diff = np.asarray(record["per_sequence_auc"][b]) - np.asarray(record["per_sequence_auc"][a])
            se = float(np.std(diff, ddof=1) / np.sqrt(len(diff)))
            record.setdefault("pairs", {})[f"{b} - {a}"] = {"diff": float(diff.mean()), "paired_se": se}
            print(f"online AUC {b} - {a}: {diff.mean():+.2f} (paired SE {se:.2f})", flush=True)

    # 3. the chaos floor: fp32 with Gaussian box jitter of the first runtime's teacher-forced rms error
    if args.seeds:
        sigma = record["teacher_forced_px"][next(iter(others))]["rms"]
        jitter_aucs = []
        for seed in range(args.seeds):
            tracker = build_tracker(args.family, fp32_linear=args.fp32_linear)
            rng = np.random.default_rng(seed)

            def jittered(search: torch.Tensor, plain_predict=tracker.predict, rng=rng):
                box, score = plain_predict(search)
                return box + torch.as_tensor(rng.normal(0.0, sigma / size, 4), dtype=box.dtype), score

            tracker.predict = jittered
            auc, jitter_seq = run_all(tracker, reader, f"fp32 + jitter, seed {seed}")
            jitter_aucs.append(auc)
            record["per_sequence_auc"][f"jittered_fp32/{seed}"] = jitter_seq.tolist()
            print(f"fp32 + jitter rms {sigma:.3f} px, seed {seed}: AUC {auc:.2f} ({auc - fp32_auc:+.2f})", flush=True)
        diffs = np.asarray(jitter_aucs) - fp32_auc
        record["jittered_fp32"] = {"sigma_px": sigma, "auc": jitter_aucs}
        print(f"chaos floor: jittered fp32 - fp32 = {diffs.mean():+.2f} +- {diffs.std(ddof=1):.2f} sd "
              f"(min {diffs.min():+.2f}, max {diffs.max():+.2f})", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
