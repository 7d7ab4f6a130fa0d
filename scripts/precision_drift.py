"""Is a reduced-precision AUC loss the arithmetic, or the chaos of an online run? Three measurements on one
family's trained miniature model over a SynthTrack test split:

1. *Teacher-forced error*: the fp32 tracker runs online; on every frame the other runtime's network sees the
   same search crop, and its box is compared with fp32's (crop pixels). This is the error on exactly the
   crops the tracker meets, drifting ones included.
2. *Online AUC* of fp32 and of the runtime.
3. *Chaos floor*: fp32 online runs whose predicted box gets Gaussian jitter of the teacher-forced error's
   size (per coordinate, crop pixels), one run per seed. Their spread of AUC around fp32 is what any
   perturbation of that size does to this benchmark; a runtime inside it is not measurably worse.

    python scripts/precision_drift.py --family ostrack --precision bf16 --root data/synthtrack_test60 --seeds 5
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from datamodules.readers import build_reader
from lightning_app.config_loading import build_model_from_configs
from trackers.evaluation.metrics_pytracking import sequence_curves
from trackers.inference.ope import run_sequence
from trackers.inference.runtime import apply_runtime
from trackers.models.checkpoints import load_weights

STAGES = {
    "ostrack": "outputs/compresstracker_mini_ablation/teacher/stage.json",
    "compresstracker": "outputs/compresstracker_mini_ablation/ct2_no_replacement/seed0/stage.json",
    "mixformerv2": "outputs/mixformerv2_mini_ablation/depth_kept_init/seed0/stage.json",
    "dytrack": "outputs/dytrack_mini_ablation/dytrack_kd/seed0/stage.json",
}


def build_tracker(family: str, precision: str = "fp32", backend: str = "torch"):
    record = json.load(open(STAGES[family]))
    command = record["command"]
    configs = [command[i + 1] for i, a in enumerate(command) if a == "--config"]
    module = build_model_from_configs(configs)
    load_weights(module.network, record["checkpoint"])
    module.eval()
    return apply_runtime(module.build_tracker(), precision, backend)


class Frames:
    def __init__(self, reader, index: int) -> None:
        self.reader, self.index = reader, index
        self.length = len(reader.sequence_info(index).boxes)

    def __len__(self) -> int:
        return self.length

    def load_frame(self, i: int) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(self.reader.frame_path(self.index, i))), cv2.COLOR_BGR2RGB)


def sequence_success(pred: np.ndarray, info) -> np.ndarray:
    """The success curve under the LaSOT rules `lightning test` scores SynthTrack with."""
    return sequence_curves(pred, np.asarray(info.boxes, dtype=np.float64), info.visible, dataset="lasot").success


def run_all(tracker, reader, predict_hook=None) -> tuple[float, np.ndarray]:
    """Online AUC over the split and the per-sequence AUCs (percent)."""
    curves = []
    for s in range(reader.num_sequences):
        info = reader.sequence_info(s)
        run = run_sequence(tracker, Frames(reader, s), np.asarray(info.boxes[0], dtype=np.float64))
        curves.append(sequence_success(run.boxes, info))
    per_sequence = np.stack(curves).mean(1) * 100  # AUC: the mean of the 21-point success curve
    return float(per_sequence.mean()), per_sequence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", choices=sorted(STAGES), default="ostrack")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--root", default="data/synthtrack_test60")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="JSON with every number")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    reader = build_reader("synthtrack", args.root, split="test", config_key=args.root)

    # 1. teacher-forced error along fp32's own trajectory
    reference, other = build_tracker(args.family), build_tracker(args.family, args.precision, args.backend)
    size = reference.search_size
    errors: list[float] = []
    fp32_predict = reference.predict

    def forced(search: torch.Tensor):
        box, score = fp32_predict(search)
        other_box, _ = other.predict(search)
        errors.append(float((other_box.float() - box.float()).abs().max()) * size)
        return box, score

    reference.predict = forced
    original_initialize = reference.initialize

    def initialize(frame, box):
        original_initialize(frame, box)
        other.initialize(frame, box)

    reference.initialize = initialize
    fp32_auc, fp32_seq = run_all(reference, reader)
    errors_np = np.asarray(errors)
    sigma = float(np.sqrt(np.mean(errors_np ** 2)))
    print(f"teacher-forced {args.precision}/{args.backend} vs fp32 on {len(errors)} frames: mean "
          f"{errors_np.mean():.3f} px, p50 {np.median(errors_np):.3f}, p95 {np.percentile(errors_np, 95):.3f}, "
          f"p99 {np.percentile(errors_np, 99):.3f}, max {errors_np.max():.2f}, >1 px {np.mean(errors_np > 1) * 100:.2f}%, "
          f"rms {sigma:.3f}", flush=True)

    # 2. the runtime online
    other_auc, other_seq = run_all(build_tracker(args.family, args.precision, args.backend), reader)
    print(f"online AUC fp32 {fp32_auc:.2f}, {args.precision}/{args.backend} {other_auc:.2f} "
          f"(diff {other_auc - fp32_auc:+.2f}, paired SE {np.std(other_seq - fp32_seq, ddof=1) / np.sqrt(len(fp32_seq)):.2f})",
          flush=True)

    # 3. the chaos floor: fp32 with jitter of the teacher-forced error's size
    jitter_aucs = []
    for seed in range(args.seeds):
        tracker = build_tracker(args.family)
        rng = np.random.default_rng(seed)
        plain_predict = tracker.predict

        def jittered(search: torch.Tensor, plain_predict=plain_predict, rng=rng):
            box, score = plain_predict(search)
            return box + torch.as_tensor(rng.normal(0.0, sigma / size, 4), dtype=box.dtype), score

        tracker.predict = jittered
        auc, _ = run_all(tracker, reader)
        jitter_aucs.append(auc)
        print(f"fp32 + jitter rms {sigma:.3f} px, seed {seed}: AUC {auc:.2f} ({auc - fp32_auc:+.2f})", flush=True)
    diffs = np.asarray(jitter_aucs) - fp32_auc
    print(f"chaos floor: jittered fp32 - fp32 = {diffs.mean():+.2f} +- {diffs.std(ddof=1):.2f} (min {diffs.min():+.2f}); "
          f"{args.precision}/{args.backend} - fp32 = {other_auc - fp32_auc:+.2f}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "family": args.family, "precision": args.precision, "backend": args.backend, "root": args.root,
            "teacher_forced_px": {"mean": errors_np.mean(), "p50": float(np.median(errors_np)),
                                  "p95": float(np.percentile(errors_np, 95)), "max": float(errors_np.max()), "rms": sigma},
            "auc": {"fp32": fp32_auc, args.precision: other_auc, "jittered_fp32": jitter_aucs},
        }, indent=2, default=float))


if __name__ == "__main__":
    main()
