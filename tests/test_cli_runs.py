"""The `lightning` command as a user runs it: error lines, the official recipe, DDP and W&B runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datamodules.synthtrack import write_synthtrack

ROOT = Path(__file__).resolve().parents[1]
LIGHTNING = [sys.executable, "-m", "lightning_app.cli"]
EXPERIMENT = ["--config", str(ROOT / "configs/ostrack_256.yaml"), "--config", str(ROOT / "configs/presets/cpu_smoke.yaml")]


def run(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", **(env or {})}
    return subprocess.run(LIGHTNING + args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    return write_synthtrack(root, num_train=4, num_test=2, length=30, image_size=(160, 120), seed=3)


def tiny_run_args(synth: Path, out: Path) -> list[str]:
    return EXPERIMENT + [
        "--data.init_args.datasets", json.dumps([{"type": "synthtrack", "root": str(synth), "split": "train"}]),
        "--data.init_args.val_datasets", "null",
        "--data.init_args.test", json.dumps({"type": "synthtrack", "root": str(synth), "split": "test"}),
        "--data.init_args.samples_per_epoch", "32", "--data.init_args.batch_size", "4",
        "--data.init_args.num_workers", "0",
        "--trainer.max_steps", "3", "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(out),
    ]


def test_missing_dataset_root_stops_with_one_line(tmp_path: Path) -> None:
    result = run(["fit", "--config", str(ROOT / "configs/ostrack_256.yaml")], cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: dataset root") and "data.init_args.datasets[0].root" in last
    assert "Traceback" not in result.stderr


def test_print_config_shows_the_official_recipe(tmp_path: Path) -> None:
    result = run(["fit", "--config", str(ROOT / "configs/ostrack_256.yaml"), "--print_config"], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    import yaml

    cfg = yaml.safe_load(result.stdout)
    net = cfg["model"]["init_args"]["network"]["init_args"]
    assert (net["embed_dim"], net["depth"], net["ce_loc"]) == (768, 12, [3, 6, 9])
    model = cfg["model"]["init_args"]
    opt, sched = model["optimizer"], model["lr_scheduler"]
    assert (opt["class_path"], opt["init_args"]["lr"], opt["init_args"]["weight_decay"]) == ("torch.optim.AdamW", 4e-4, 1e-4)
    assert (sched["class_path"], sched["init_args"]["step_size"]) == ("torch.optim.lr_scheduler.StepLR", 240)
    assert model["param_groups"]["backbone_lr_multiplier"] == 0.1
    assert cfg["trainer"]["max_epochs"] == 300 and cfg["trainer"]["gradient_clip_val"] == 0.1
    data = cfg["data"]["init_args"]
    assert data["samples_per_epoch"] == 60000 and data["batch_size"] == 32
    assert data["search"]["factor"] == 4.0 and data["search"]["center_jitter"] == 3.0


def test_print_config_shows_the_mixformerv2_b_recipe_with_its_shared_fragments(tmp_path: Path) -> None:
    config = str(ROOT / "configs/mixformerv2_b.yaml")
    result = run(["fit", "--config", config, "--print_config"], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    import yaml

    cfg = yaml.safe_load(result.stdout)
    net = cfg["model"]["init_args"]["network"]["init_args"]
    assert (net["embed_dim"], net["depth"], net["num_bins"], net["gamma_mode"]) == (768, 12, 72, "branch")
    decay = cfg["layer_decay"]["init_args"]
    assert (decay["blocks"], decay["decay_epochs"], decay["remove_after_epoch"]) == ([0, 3, 6, 9], 40, 45)
    assert cfg["snapshots"]["init_args"]["every_n_epochs"] == 45 and cfg["trainer"]["max_epochs"] == 545
    callbacks = [c["class_path"].rsplit(".", 1)[-1] for c in cfg["trainer"]["callbacks"]]
    assert callbacks == ["ModelCheckpoint", "LearningRateMonitor", "DataHealthMonitor"]  # callbacks/default.yaml
    data = cfg["data"]["init_args"]
    assert [d["type"] for d in data["datasets"]] == ["got10k", "lasot", "coco", "trackingnet"]  # datasets/*.yaml
    assert (data["template"]["size"], data["search"]["size"], data["search"]["factor"]) == (128, 288, 5.0)
    assert cfg["model"]["init_args"]["tracker"]["update_intervals"]["got10k_test"] == 10  # the code's official B
    assert cfg["trainer"]["use_distributed_sampler"] is False


def test_fit_then_test_writes_results_and_metrics(tiny_synth: Path, tmp_path: Path) -> None:
    args = tiny_run_args(tiny_synth, tmp_path)
    fit = run(["fit", *args], cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = next(tmp_path.rglob("last.ckpt"))
    test = run(["test", *args, "--ckpt_path", str(ckpt), "--model.init_args.results_dir", str(tmp_path / "results")],
               cwd=tmp_path)
    assert test.returncode == 0, test.stderr[-3000:]
    assert "test/pytracking/AUC" in test.stdout
    result_files = sorted((tmp_path / "results" / "synthtrack" / "ostrack").glob("*.txt"))
    names = (tiny_synth / "test_split.txt").read_text().split()
    assert {p.stem for p in result_files} == set(names) | {f"{n}_time" for n in names}


def test_ddp_two_cpu_ranks_draw_different_samples(tiny_synth: Path, tmp_path: Path) -> None:
    record = tmp_path / "samples"
    args = tiny_run_args(tiny_synth, tmp_path) + [
        "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_steps", "2",
        "--trainer.callbacks+=sample_recorder.SampleRecorder", f"--trainer.callbacks.out_dir={record}",
        "--data.init_args.normalize_on_device=true",  # uint8 from the workers, normalised after the transfer
    ]
    result = run(["fit", *args], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((record / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks) and ranks[0]["pid"] != ranks[1]["pid"]
    a, b = (set(r["samples"]) for r in ranks)
    assert len(a) == len(ranks[0]["samples"]) == 8 and len(b) == 8
    assert not a & b
    assert all(r["dtypes"] == ["torch.float32"] for r in ranks)


def test_wandb_offline_run_holds_the_logged_losses(tiny_synth: Path, tmp_path: Path) -> None:
    args = tiny_run_args(tiny_synth, tmp_path) + [
        "--config", str(ROOT / "configs/trainer/wandb.yaml"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "wandb_logs"),
        "--trainer.logger.init_args.group", "unit-test", "--trainer.log_every_n_steps", "1",
    ]
    env = {"WANDB_API_KEY": "", "NETRC": str(tmp_path / "no_netrc"), "WANDB_SILENT": "true"}
    result = run(["fit", *args], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "wandb_logs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    records = b"".join(p.read_bytes() for p in runs[0].glob("*.wandb"))
    assert b"train/total" in records and b"train/giou" in records and b"unit-test" in records
