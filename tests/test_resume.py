"""A fit killed with kill -9 and resumed from its last checkpoint ends where the uninterrupted fit ends:
bitwise equal weights, and mid-epoch the resumed run draws exactly the samples the uninterrupted one drew."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from datamodules.synthtrack import write_synthtrack

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["configs/ostrack_256.yaml", "configs/presets/cpu_smoke.yaml", "configs/presets/ostrack_tiny.yaml"]
BATCH, STEPS_PER_EPOCH, EPOCHS = 4, 4, 2


class KillAtStep(L.Callback):
    """Ends the process with SIGKILL (no clean-up, like a lost node) when ``step`` optimizer steps are done."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step == self.step:  # the checkpoint of step `step` was written at the last batch end
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthtrack(tmp_path_factory.mktemp("synth"), num_train=4, num_test=2, length=30, image_size=(160, 120), seed=3)


def fit(synth: Path, out: Path, extra: list[str], workers: int = 0) -> subprocess.CompletedProcess:
    args = [a for c in CONFIGS for a in ("--config", str(ROOT / c))] + [
        "--data.init_args.datasets", json.dumps([{"type": "synthtrack", "root": str(synth), "split": "train"}]),
        "--data.init_args.val_datasets", "null", "--data.init_args.test", "null",
        "--data.init_args.samples_per_epoch", str(BATCH * STEPS_PER_EPOCH), "--data.init_args.batch_size", str(BATCH),
        "--data.init_args.num_workers", str(workers), "--trainer.max_epochs", str(EPOCHS),
        "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(out), "--seed_everything", "7",
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.dirpath={out / 'ckpt'}", "--trainer.callbacks.every_n_train_steps=1",
        "--trainer.callbacks.save_last=true", "--trainer.callbacks.save_top_k=0",
        "--trainer.callbacks+=sample_recorder.SampleRecorder", f"--trainer.callbacks.out_dir={out / 'samples'}",
    ]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "lightning_app.cli", "fit", *args, *extra], cwd=out, env=env,
                          capture_output=True, text=True, timeout=400)


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    result = fit(synth, out, [])
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kill_step", [STEPS_PER_EPOCH + 1, STEPS_PER_EPOCH], ids=["mid_epoch", "epoch_boundary"])
def test_kill_9_then_resume_ends_with_the_uninterrupted_weights(synth: Path, uninterrupted: Path, tmp_path: Path,
                                                                kill_step: int) -> None:
    killed = fit(synth, tmp_path, ["--trainer.callbacks+=test_resume.KillAtStep", f"--trainer.callbacks.step={kill_step}"])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = fit(synth, tmp_path, ["--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    full = json.loads((uninterrupted / "samples" / "rank0.json").read_text())["samples"]
    rest = json.loads((tmp_path / "samples" / "rank0.json").read_text())["samples"]
    assert rest == full[kill_step * BATCH:]  # the resumed run continues the sample stream where it stopped
    expected, got = weights(uninterrupted), weights(tmp_path)
    assert expected.keys() == got.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, different[:5]
