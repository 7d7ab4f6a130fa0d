"""`lightning sweep` without a cluster: expansion and names, the job script, what is resubmitted, and the
report's table against the runs' metrics.json."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from lightning_app.commands.sweep import main as sweep_main
from lightning_app.sweep.jobscript import render
from lightning_app.sweep.report import write_report
from lightning_app.sweep.spec import load_sweep
from lightning_app.sweep.submit import runs_to_submit
from trackers.errors import SetupError
from trackers.evaluation.result_files import METRICS_FILE

ROOT = Path(__file__).resolve().parents[1]


def sweep_file(tmp_path: Path, **extra) -> Path:  # noqa: ANN003
    spec = {"name": "abl", "root": str(tmp_path / "runs"), "configs": ["configs/ostrack_256.yaml"],
            "grid": {"model.init_args.optimizer.init_args.lr": [1e-3, 1e-4], "data.init_args.batch_size": [8]},
            "seeds": [0, 1], "resources": {"nodes": 2, "gpus_per_node": 4, "partition": "gpu", "account": "lab",
                                           "qos": "high", "constraint": "a100", "extra_sbatch": ["--exclusive"]},
            **extra}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_grid_times_seeds_expands_into_named_runs_with_their_own_folders(tmp_path: Path) -> None:
    sweep = load_sweep(sweep_file(tmp_path))
    assert [r.name for r in sweep.runs] == ["lr=0.001-batch_size=8-seed=0", "lr=0.001-batch_size=8-seed=1",
                                            "lr=0.0001-batch_size=8-seed=0", "lr=0.0001-batch_size=8-seed=1"]
    assert len({r.dir for r in sweep.runs}) == 4 and {r.setting for r in sweep.runs} == {
        "lr=0.001-batch_size=8", "lr=0.0001-batch_size=8"}


def test_the_slurm_job_script_matches_the_layout_and_asks_for_the_warning_signal(tmp_path: Path) -> None:
    sweep = load_sweep(sweep_file(tmp_path))
    script = render(sweep, list(sweep.runs), "slurm")
    for line in ("--array=0,1,2,3", "--nodes=2", "--ntasks-per-node=4", "--gres=gpu:4", "--partition=gpu",
                 "--account=lab", "--qos=high", "--constraint=a100", "#SBATCH --exclusive", "--signal=USR1@300",
                 "--requeue"):
        assert line in script, line
    assert script.count("--trainer.num_nodes 2 --trainer.devices 4 --trainer.strategy ddp") == 8  # fit + test x 4
    assert "srun" in script and "--model.init_args.optimizer.init_args.lr 0.0001" in script
    local = render(sweep, list(sweep.runs), "local")
    assert "#SBATCH" not in local and "LAUNCH=()" in local and "--trainer.num_nodes 1 --trainer.devices 4" in local


def test_dry_run_prints_the_job_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sweep_main(["run", str(sweep_file(tmp_path)), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("#!/bin/bash\n#SBATCH --job-name=abl")
    assert not (tmp_path / "runs").exists()  # nothing submitted or written


def test_resubmission_skips_finished_runs_and_takes_failed_and_lost_ones(tmp_path: Path) -> None:
    sweep = load_sweep(sweep_file(tmp_path))
    states = ["COMPLETED job=5_0", "FAILED job=5_1", "RUNNING job=5_2", None]  # 5_2 is in no queue: lost
    for run, state in zip(sweep.runs, states, strict=True):
        if state:
            run.dir.mkdir(parents=True)
            (run.dir / "state").write_text(state)
    assert [r.name for r in runs_to_submit(sweep)] == [sweep.runs[i].name for i in (1, 2, 3)]


def test_a_seed_axis_and_unknown_keys_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="unknown sweep keys"):
        load_sweep(sweep_file(tmp_path, axes={}))
    with pytest.raises(SetupError, match="seeds"):
        load_sweep(sweep_file(tmp_path, grid={"seed_everything": [1, 2]}))


def _fake_result(run_dir: Path, auc: float, seconds_per_frame: float) -> None:
    raw = run_dir / "results" / "synthtrack" / "ostrack"
    raw.mkdir(parents=True)
    record = {"benchmark": "synthtrack", "tracker": "ostrack",
              "metrics": {"pytracking": {"AUC": auc, "Precision": auc + 5, "NormPrecision": auc + 1}}}
    (raw / METRICS_FILE).write_text(json.dumps(record))
    (raw / "seq_time.txt").write_text("\n".join([str(seconds_per_frame)] * 10))


def test_the_report_table_equals_the_runs_metrics_and_averages_over_seeds(tmp_path: Path) -> None:
    sweep = load_sweep(sweep_file(tmp_path))
    aucs = [40.0, 44.0, 30.0, 31.0]
    for run, auc in zip(sweep.runs, aucs, strict=True):
        _fake_result(run.dir, auc, 0.01)
    out, runs, ablation, _ = write_report(sweep)
    with (out / "runs.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [float(r["AUC"]) for r in table] == aucs
    assert all(float(r["FPS"]) == pytest.approx(100.0) for r in table)
    assert [row["AUC_mean"] for row in ablation] == [42.0, 30.5]
    assert ablation[0]["AUC_std"] == pytest.approx(2 ** 0.5 * 2)  # sample std of (40, 44)
    assert "42.00 +- 2.83" in (out / "ablation.md").read_text()
    assert (out / "auc_vs_fps.png").stat().st_size > 0 and (out / "bar_lr.png").is_file()


def test_the_report_logs_its_tables_to_an_offline_wandb_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "")
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    sweep = load_sweep(sweep_file(tmp_path, wandb=True))
    for run in sweep.runs:
        _fake_result(run.dir, 40.0, 0.02)
    out, _, _, note = write_report(sweep)
    assert note is not None and note.startswith("wandb sync ")
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (table_file,) = runs[0].glob("files/media/table/runs_*.table.json")
    table = json.loads(table_file.read_text())
    auc = table["columns"].index("AUC")
    assert [row[auc] for row in table["data"]] == [40.0] * 4  # the W&B table holds the metrics.json values
    assert list(runs[0].glob("files/media/table/ablation_*.table.json"))
