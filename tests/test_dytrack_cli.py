"""DyTrack as a user runs it: the recipe, a tiny fit + test printing the exit mix, `calibrate`, `benchmark model`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from datamodules.synthtrack import write_synthtrack

ROOT = Path(__file__).resolve().parents[1]
LIGHTNING = [sys.executable, "-m", "lightning_app.cli"]
CONFIGS = ["configs/dytrack_256.yaml", "configs/presets/cpu_smoke.yaml", "configs/presets/dytrack_tiny.yaml"]
TIMEOUT = 600


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    return subprocess.run(LIGHTNING + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def config_args() -> list[str]:
    return [a for c in CONFIGS for a in ("--config", str(ROOT / c))]


def benchmark_spec(synth: Path) -> str:
    return json.dumps({"type": "synthtrack", "root": str(synth), "split": "test"})


def data_args(synth: Path) -> list[str]:
    return [
        "--data.init_args.datasets", json.dumps([{"type": "synthtrack", "root": str(synth / "train"), "split": "train"}]),
        "--data.init_args.val_datasets", "null",
        "--data.init_args.test", benchmark_spec(synth / "test"),
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(synth root, checkpoint) of a 3-step tiny DyTrack run; training sequences long enough for the
    sampler's gap, test sequences short (8 frames) to keep the online runs quick."""
    root = tmp_path_factory.mktemp("dytrack")
    synth = root / "synth"
    write_synthtrack(synth / "train", num_train=4, num_test=1, length=30, image_size=(160, 120), seed=3)
    write_synthtrack(synth / "test", num_train=1, num_test=2, length=8, image_size=(160, 120), seed=4)
    out = root / "run"
    result = run(["fit", *config_args(), *data_args(synth),
                  "--data.init_args.samples_per_epoch", "16", "--data.init_args.batch_size", "4",
                  "--data.init_args.num_workers", "0", "--trainer.max_steps", "3", "--trainer.limit_val_batches", "0",
                  "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(out)], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return synth, next(out.rglob("last.ckpt"))


def test_print_config_shows_the_dytrack_recipe(tmp_path: Path) -> None:
    result = run(["fit", "--config", str(ROOT / "configs/dytrack_256.yaml"), "--print_config"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    model = yaml.safe_load(result.stdout)["model"]["init_args"]
    net = model["network"]["init_args"]
    assert (net["embed_dim"], net["depth"], net["exits"], net["recycling"]) == (768, 12, [2, 6, 12], "cascade")
    assert model["distillation"]["target"] == "feature" and model["iou_loss"]["form"] == "mse"


def test_the_test_records_each_frames_exit_and_prints_the_distribution(trained: tuple[Path, Path], tmp_path: Path) -> None:
    synth, ckpt = trained
    results = tmp_path / "results"
    result = run(["test", *config_args(), *data_args(synth), "--trainer.enable_progress_bar", "false",
                  "--model.init_args.tracker.thresholds", "[0.0, 2.0]", "--model.init_args.results_dir", str(results),
                  "--ckpt_path", str(ckpt)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "exit distribution over 14 frames: after 1 blocks 100.0%" in result.stdout + result.stderr
    exits = sorted(results.rglob("per_frame/*/exit.txt"))
    assert len(exits) == 2
    values = np.loadtxt(exits[0])
    assert np.isnan(values[0]) and (values[1:] == 0).all()  # threshold 0: every tracked frame at the first exit
    summary = json.loads(next(results.rglob("exits.json")).read_text())
    assert summary["mean_depth"] == 1.0 and summary["gflops_per_exit"] == sorted(summary["gflops_per_exit"])


def test_calibrate_writes_the_curve_with_the_forced_exits(trained: tuple[Path, Path], tmp_path: Path) -> None:
    synth, ckpt = trained
    out = tmp_path / "calibration"
    result = run(["calibrate", *config_args(), "--ckpt_path", str(ckpt), "--thresholds", "0.5", "--out", str(out),
                  f"--override=--data.init_args.test={benchmark_spec(synth / 'test')}"],
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "calibration.json").read_text())
    labels = [p["label"] for p in record["points"]]
    assert labels == ["always exit 0 (first)", "always exit 1 (forced)", "always exit 2 (deepest)", "tau=0.5"]
    depths = [p["mean_depth"] for p in record["points"][:3]]
    assert depths == [1.0, 2.0, 4.0]
    assert record["chosen"] is not None and record["confirmed"]["auc"] == record["chosen"]["auc"]  # deterministic
    assert (out / "calibration.png").stat().st_size > 0 and (out / "calibration.csv").is_file()


def test_benchmark_model_times_each_exit_and_real_frames(trained: tuple[Path, Path], tmp_path: Path) -> None:
    synth, ckpt = trained
    smoke = tmp_path / "bench.yaml"
    smoke.write_text(yaml.safe_dump({"data": {"init_args": {"test": json.loads(benchmark_spec(synth / "test"))}}}))
    report = tmp_path / "bench.json"
    result = run(["benchmark", "model", *config_args(), "--config", str(smoke), "--ckpt_path", str(ckpt),
                  "--warmup", "1", "--iters", "2", "--frames", "5", "--device", "cpu", "--json", str(report),
                  "--precision", "bf16"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "per-exit latency" in result.stdout and "vs always-deepest" in result.stdout
    timing = json.loads(report.read_text())[-1]
    assert len(timing["per_exit_ms"]) == 3 and timing["frames"] == 5 and timing["ratio"] > 0
    assert timing["name"].endswith("_bf16")  # the early-exit section runs at --precision like the table
