"""An offline W&B run of `lightning test` as a sweep launches it: the sweep's values and the flat resolved
hyper-parameters as config keys, the benchmark's scores in the summary, the per-sequence table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datamodules.synthtrack import write_synthtrack
from lightning_app.loggers import flat_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["configs/ostrack_256.yaml", "configs/presets/cpu_smoke.yaml", "configs/presets/ostrack_tiny.yaml",
           "configs/trainer/wandb.yaml"]


def test_flat_config_names_nested_keys_with_dots() -> None:
    flat = flat_config({"network": {"init_args": {"depth": 4}}, "datasets": [{"root": "a"}], "lr": 1e-3})
    assert flat == {"network.init_args.depth": 4, "datasets.0.root": "a", "lr": 1e-3}


def _records_when_written(run: Path, wait_s: float = 60.0) -> bytes:
    """The offline run's records (config and summary live there). W&B's writer is its own process and may
    still be flushing when the command has exited on a loaded machine, so wait for the summary."""
    deadline = time.monotonic() + wait_s
    while True:
        records = b"".join(p.read_bytes() for p in run.glob("*.wandb"))
        if b"test/FPS" in records or time.monotonic() > deadline:
            return records
        time.sleep(1.0)


@pytest.mark.timeout(400)
def test_an_offline_test_run_holds_config_keys_summary_scores_and_the_per_sequence_table(tmp_path: Path) -> None:
    synth = write_synthtrack(tmp_path / "synth", num_train=2, num_test=2, length=20, image_size=(160, 120), seed=3)
    args = [a for c in CONFIGS for a in ("--config", str(ROOT / c))] + [
        "--data.init_args.test", json.dumps({"type": "synthtrack", "root": str(synth), "split": "test"}),
        "--trainer.default_root_dir", str(tmp_path / "test"), "--trainer.enable_progress_bar", "false",
        "--model.init_args.results_dir", str(tmp_path / "results"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "wandb"), "--trainer.logger.init_args.group", "abl",
        "--trainer.logger.init_args.job_type", "test", "--trainer.logger.init_args.tags", '["lr=0.001"]',
        "--trainer.logger.init_args.sweep_values", '{"model.init_args.optimizer.init_args.lr": 0.001}',
        "--trainer.callbacks+=lightning_app.loggers.WandbTestReport",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_API_KEY": "", "NETRC": str(tmp_path / "no_netrc"),
           "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "lightning_app.cli", "test", *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=360)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wandb sync" in result.stdout + result.stderr  # the sync command is printed
    (run,) = (tmp_path / "wandb" / "wandb").glob("offline-run-*")
    records = _records_when_written(run)
    assert b"loss_weights.giou" in records and b"optimizer.class_path" in records  # flat hyper-parameter keys
    assert b"trainer.max_epochs" in records and b"data.init_args.batch_size" in records  # the whole resolved config
    assert b"lr=0.001" in records and b"abl" in records  # tag and group
    metrics = json.loads(next((tmp_path / "results").rglob("metrics.json")).read_text())["metrics"]["pytracking"]
    for key in ("test/pytracking/AUC", "test/FPS", "test/params_M", "test/GMACs"):
        assert key.encode() in records, key
    assert json.dumps(metrics["AUC"]).encode() in records  # the summary holds the metrics.json score
    (table_file,) = run.glob("files/media/table/test/per_sequence_*.table.json")
    table = json.loads(table_file.read_text())
    names = (synth / "test_split.txt").read_text().split()
    assert sorted(row[0] for row in table["data"]) == sorted(names)
    assert list(run.glob("files/media/images/test/success*_plot_*.png"))
