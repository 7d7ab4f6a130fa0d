"""CompressTracker as a user runs it: the recipe in --print_config, the missing-teacher line, a CT-4 smoke
fit + test of the deployable student without its teacher, and the export to the official layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from datamodules.synthtrack import write_synthtrack
from trackers.models.checkpoints import load_weights
from trackers.models.compresstracker import build_student, export_official_checkpoint
from trackers.models.ostrack import OSTrack
from trackers.safe_unpickling import load_checkpoint_data

ROOT = Path(__file__).resolve().parents[1]
LIGHTNING = [sys.executable, "-m", "lightning_app.cli"]
CT4_SMOKE = [
    "--config", str(ROOT / "configs/compresstracker_4.yaml"),
    "--config", str(ROOT / "configs/presets/cpu_smoke.yaml"),
    "--config", str(ROOT / "configs/presets/cpu_smoke_compresstracker/student.yaml"),
]  # fmt: skip
SMOKE_TEACHER = dict(embed_dim=64, depth=12, num_heads=2, template_size=64, search_size=128, head_channels=256,
                     drop_path_rate=0.0)  # what CT4_SMOKE composes for the teacher  # fmt: skip


def run(args: list[str], cwd: Path, timeout: int = 420) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    return subprocess.run(LIGHTNING + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory) -> Path:
    return write_synthtrack(tmp_path_factory.mktemp("synth"), num_train=3, num_test=1, length=20, image_size=(160, 120), seed=7)


def run_args(synth: Path, out: Path) -> list[str]:
    split = lambda name: {"type": "synthtrack", "root": str(synth), "split": name}  # noqa: E731
    return [*CT4_SMOKE, "--trainer.max_steps", "3",
        "--data.init_args.datasets", json.dumps([split("train")]),
        "--data.init_args.val_datasets", json.dumps([split("test")]),
        "--data.init_args.test", json.dumps(split("test")),
        "--data.init_args.samples_per_epoch", "4", "--data.init_args.val_samples_per_epoch", "2",
        "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0",
        "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(out),
    ]  # fmt: skip


def test_print_config_shows_the_official_recipe_with_the_stage_swap_and_teacher_freeze(tmp_path: Path) -> None:
    result = run(["fit", "--config", str(ROOT / "configs/compresstracker_4.yaml"), "--print_config"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    cfg = yaml.safe_load(result.stdout)
    assert cfg["stage_swap"]["class_path"] == "callbacks.stochastic_stage_swap.StochasticStageSwap"
    assert cfg["stage_swap"]["init_args"]["p_init"] == 0.5
    assert cfg["teacher_freeze"]["class_path"].endswith("TeacherFreeze")
    model = cfg["model"]["init_args"]
    assert model["network"]["init_args"]["depth"] == 4 and model["teacher"]["init_args"]["ce_loc"] == []
    assert model["optimizer"]["init_args"]["lr"] == 4.0e-5 and model["lr_scheduler"]["init_args"]["step_size"] == 400
    trainer = cfg["trainer"]
    assert (trainer["max_epochs"], trainer["gradient_clip_val"], trainer["devices"]) == (500, 0.1, 8)
    assert cfg["data"]["init_args"]["batch_size"] == 32


def test_fit_without_teacher_checkpoint_stops_with_one_line_naming_key_and_producer(tiny_synth: Path, tmp_path: Path) -> None:
    result = run(["fit", *run_args(tiny_synth, tmp_path)], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: model.init_args.teacher_checkpoint")
    assert "configs/ostrack_256.yaml" in last and "OSTrack_ep0300.pth.tar" in last
    assert "Traceback" not in result.stderr


def test_ct4_smoke_fits_tests_without_its_teacher_and_exports_to_the_official_layout(tiny_synth: Path, tmp_path: Path) -> None:
    teacher = tmp_path / "teacher.pt"
    torch.manual_seed(0)
    torch.save(OSTrack(**SMOKE_TEACHER).state_dict(), teacher)
    args = run_args(tiny_synth, tmp_path) + ["--model.init_args.teacher_checkpoint", str(teacher)]
    fit = run(["fit", *args], cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = next(tmp_path.rglob("last.ckpt"))
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["state_dict"] and all(k.startswith("network.") for k in saved["state_dict"])  # no teacher inside
    assert any("StochasticStageSwap" in k for k in saved["callbacks"])  # the generator state, for resuming

    teacher.unlink()
    test = run(["test", *args, "--ckpt_path", str(ckpt), "--model.init_args.results_dir", str(tmp_path / "results")],
               cwd=tmp_path)  # fmt: skip
    assert test.returncode == 0, test.stderr[-3000:]
    assert "test/pytracking/AUC" in test.stdout

    official = export_official_checkpoint(ckpt, tmp_path / "CompressTracker_ep0001.pth.tar")
    net = load_checkpoint_data(official)["net"]
    assert any(k.startswith("backbone.distill_blocks.3.") for k in net) and not any(".blocks." in k for k in net)
    student = build_student(4, **{k: v for k, v in SMOKE_TEACHER.items() if k != "depth"})
    load_weights(student, official)  # strict, through the official-name converter
    expected = {k.removeprefix("network."): v for k, v in saved["state_dict"].items()}
    assert all(torch.equal(v, expected[k]) for k, v in student.state_dict().items())
