"""Two seeded fits of every method end with bitwise-equal weights on this CPU, data workers and the
methods' schedules included (CE keep rate, stage swapping and its generator, teachers): the
precondition for resuming a killed run (tests/test_resume.py) and for reading a seed spread as noise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from datamodules.synthtrack import write_synthtrack
from trackers.models.mixvit import MixViT
from trackers.models.ostrack import OSTrack

ROOT = Path(__file__).resolve().parents[1]
SMOKE = "configs/presets/cpu_smoke.yaml"
SIZES = dict(template_size=64, search_size=128, drop_path_rate=0.0)


def _ostrack_teacher() -> torch.nn.Module:  # what the CT-4 smoke composes for its teacher
    return OSTrack(embed_dim=64, depth=12, num_heads=2, head_channels=256, **SIZES)


def _mixvit_teacher() -> torch.nn.Module:  # what the MixFormerV2 stage-1 smoke composes for its teacher
    return MixViT(embed_dim=64, depth=12, num_heads=2, head_type="CORNER_UP", head_channels=384, **SIZES)


METHODS: dict[str, tuple[list[str], Callable[[], torch.nn.Module] | None]] = {
    "ostrack": (["configs/ostrack_256.yaml", SMOKE, "configs/presets/ostrack_tiny.yaml"], None),
    "compresstracker": (["configs/compresstracker_4.yaml", SMOKE,
                         "configs/presets/cpu_smoke_compresstracker/student.yaml"], _ostrack_teacher),
    "mixformerv2_stage1": (["configs/mixformerv2_b_stage1.yaml", SMOKE,
                            "configs/presets/cpu_smoke_mixformerv2/bins.yaml",
                            "configs/presets/cpu_smoke_mixformerv2/stage1.yaml"], _mixvit_teacher),
    "dytrack": (["configs/dytrack_256.yaml", SMOKE, "configs/presets/dytrack_tiny.yaml"], None),
}  # fmt: skip


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthtrack(tmp_path_factory.mktemp("synth"), num_train=3, num_test=1, length=20,
                            image_size=(160, 120), seed=5)


def _fit(configs: list[str], synth: Path, out: Path, extra: list[str]) -> dict[str, torch.Tensor]:
    split = {"type": "synthtrack", "root": str(synth), "split": "train"}
    args = [a for c in configs for a in ("--config", str(ROOT / c))] + [
        "--data.init_args.datasets", json.dumps([split]), "--data.init_args.val_datasets", "null",
        "--data.init_args.test", "null", "--data.init_args.samples_per_epoch", "6",
        "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "2", "--trainer.max_steps", "3",
        "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(out), "--seed_everything", "11", *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "lightning_app.cli", "fit", *args], cwd=out, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (last,) = out.rglob("last.ckpt")
    return torch.load(last, map_location="cpu", weights_only=True)["state_dict"]


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.timeout(700)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_two_seeded_fits_end_with_bitwise_equal_weights(method: str, synth: Path, tmp_path: Path) -> None:
    configs, teacher = METHODS[method]
    extra: list[str] = []
    if teacher is not None:
        torch.manual_seed(0)
        path = tmp_path / "teacher.pt"
        torch.save(teacher().state_dict(), path)
        extra = ["--model.init_args.teacher_checkpoint", str(path)]
    first, second = (_fit(configs, synth, _folder(tmp_path / f"run{i}"), extra) for i in range(2))
    assert first.keys() == second.keys()
    differing = [k for k in first if not torch.equal(first[k], second[k])]
    assert not differing, f"{method}: {len(differing)} tensors differ, e.g. {differing[:3]}"
    assert any(k.startswith("network.") and first[k].is_floating_point() for k in first)  # the trained network
