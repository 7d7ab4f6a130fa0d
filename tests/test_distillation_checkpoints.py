"""A distilled checkpoint is self-contained for evaluation: `lightning test` / `validate` without the teacher file.

The teacher is read when fitting starts (a missing one stops `fit` with one line naming the key and
the stage that produces it); a checkpoint leaves it out by default, so evaluation must not need it.
Runs the real command in subprocesses on a tiny SynthTrack and a tiny stage-1 MixFormerV2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from datamodules.synthtrack import write_synthtrack
from trackers.models.mixformerv2 import MixFormerV2
from trackers.models.mixvit import MixViT

ROOT = Path(__file__).resolve().parents[1]
LIGHTNING = [sys.executable, "-m", "lightning_app.cli"]
STAGE1 = [
    "--config", str(ROOT / "configs/mixformerv2_b_stage1.yaml"),
    "--config", str(ROOT / "configs/presets/cpu_smoke.yaml"),
    "--config", str(ROOT / "configs/presets/cpu_smoke_mixformerv2/bins.yaml"),
    "--config", str(ROOT / "configs/presets/cpu_smoke_mixformerv2/stage1.yaml"),
    "--model.init_args.network.init_args.depth", "2",
    "--model.init_args.teacher.init_args.depth", "2",
    "--model.init_args.teacher.init_args.head_channels", "16",
]  # fmt: skip
TEACHER = dict(embed_dim=64, depth=2, num_heads=2, template_size=64, search_size=128, head_type="CORNER_UP",
               head_channels=16, drop_path_rate=0.0)  # what STAGE1 composes for the teacher  # fmt: skip


def run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    return subprocess.run(LIGHTNING + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    return write_synthtrack(root, num_train=3, num_test=1, length=20, image_size=(160, 120), seed=5)


DEPTH8 = [  # 12 -> 8: blocks fade over 2 epochs and are removed after epoch 3, one step per epoch
    "--config", str(ROOT / "configs/mixformerv2_b.yaml"),
    "--config", str(ROOT / "configs/presets/cpu_smoke.yaml"),
    "--config", str(ROOT / "configs/presets/cpu_smoke_mixformerv2/bins.yaml"),   # num_bins: null
    "--config", str(ROOT / "configs/presets/cpu_smoke_mixformerv2/depth_pruning.yaml"),
]  # fmt: skip
LINEAGE_BINS = 24  # the stage-1 checkpoint's bins: DEPTH8 sets none, so fit and test take them from checkpoints
DEPTH8_STUDENT = dict(embed_dim=64, depth=12, num_heads=2, template_size=64, search_size=128, num_bins=LINEAGE_BINS,
                      score_head=False, drop_path_rate=0.0)  # what DEPTH8 composes for student and teacher  # fmt: skip


def run_args(synth: Path, out: Path, experiment: list[str] = STAGE1, steps: tuple[str, ...] = ("--trainer.max_steps", "2")):
    split = lambda name: {"type": "synthtrack", "root": str(synth), "split": name}  # noqa: E731
    return [*experiment, *steps,
        "--data.init_args.datasets", json.dumps([split("train")]),
        "--data.init_args.val_datasets", json.dumps([split("test")]),
        "--data.init_args.test", json.dumps(split("test")),
        "--data.init_args.samples_per_epoch", "8", "--data.init_args.val_samples_per_epoch", "4",
        "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0",
        "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(out),
    ]  # fmt: skip


def test_fit_without_teacher_checkpoint_stops_with_one_line_naming_key_and_stage(tiny_synth: Path, tmp_path: Path):
    result = run(["fit", *run_args(tiny_synth, tmp_path)], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: model.init_args.teacher_checkpoint") and "configs/mixvit_b.yaml" in last
    assert "Traceback" not in result.stderr


def test_distilled_checkpoint_tests_and_validates_without_the_teacher_file(tiny_synth: Path, tmp_path: Path):
    teacher = tmp_path / "teacher.pt"
    torch.save(MixViT(**TEACHER).state_dict(), teacher)
    args = run_args(tiny_synth, tmp_path) + ["--model.init_args.teacher_checkpoint", str(teacher)]
    fit = run(["fit", *args], cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = next(tmp_path.rglob("last.ckpt"))
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)  # plain data only: no callable in the hparams
    assert not any(k.startswith("teacher.") for k in saved["state_dict"])
    assert saved["hyper_parameters"]["optimizer"]["class_path"] == "torch.optim.AdamW"
    assert "tracker" not in saved["hyper_parameters"] and "network" not in saved["hyper_parameters"]

    teacher.unlink()
    test = run(["test", *args, "--ckpt_path", str(ckpt), "--model.init_args.results_dir", str(tmp_path / "results")],
               cwd=tmp_path)  # fmt: skip
    assert test.returncode == 0, test.stderr[-3000:]
    assert "test/pytracking/AUC" in test.stdout
    assert list((tmp_path / "results" / "synthtrack").rglob("*.txt"))

    validate = run(["validate", *args, "--ckpt_path", str(ckpt), "--trainer.limit_val_batches", "1"], cwd=tmp_path)
    assert validate.returncode == 0, validate.stderr[-3000:]
    assert "val/ciou" in validate.stdout and "val/logit" not in validate.stdout  # no teacher: GT losses only


def test_depth_pruned_checkpoint_tests_without_the_teacher_file(tiny_synth: Path, tmp_path: Path):
    """The checkpoint holds the shallower student (``pruned_blocks``) and no teacher; `test` rebuilds it from the config."""
    teacher = tmp_path / "stage1.pt"
    torch.save(MixFormerV2(**DEPTH8_STUDENT).state_dict(), teacher)
    args = run_args(tiny_synth, tmp_path, DEPTH8, steps=("--trainer.limit_train_batches", "1"))
    args += ["--model.init_args.teacher_checkpoint", str(teacher)]
    fit = run(["fit", *args], cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = next(tmp_path.rglob("last.ckpt"))
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["pruned_blocks"] == [0, 3, 6, 9] and not any(k.startswith("teacher.") for k in saved["state_dict"])
    assert saved["state_dict"]["network.box_head.layers.1.0.weight"].shape[0] == LINEAGE_BINS
    teacher.unlink()
    test = run(["test", *args, "--ckpt_path", str(ckpt), "--model.init_args.results_dir", str(tmp_path / "results")],
               cwd=tmp_path)  # fmt: skip
    assert test.returncode == 0, test.stderr[-3000:]
    assert "test/pytracking/AUC" in test.stdout
