"""On a real SLURM cluster (two fake nodes on this machine, scripts/slurm/cluster.sh; `make test` brings it up):
a sweep as a job array, a 2-node DDP fit, and a requeue on the warning signal that resumes.

Where the cluster is not up the tests skip with one line; DISTILTRACK_REQUIRE_SLURM=1 (.ci/run) makes
that a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from datamodules.synthtrack import write_synthtrack

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONF = Path(os.environ.get("SLURM_ROOT", "/tmp/distiltrack-slurm")) / "etc/slurm.conf"
SMOKE_CONFIGS = [str(ROOT / c) for c in ("configs/ostrack_256.yaml", "configs/presets/cpu_smoke.yaml",
                                         "configs/presets/ostrack_tiny.yaml", "configs/sweeps/fragments/tiny_run.yaml")]
ENV = {"OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "WANDB_MODE": "disabled"}


def _cluster_problem(env: dict[str, str]) -> str | None:
    if shutil.which("sbatch") is None:
        return "SLURM is not installed (scripts/slurm/cluster.sh up installs it as root; make test runs it)"
    if not Path(env["SLURM_CONF"]).is_file():
        return f"no SLURM cluster: {env['SLURM_CONF']} missing (run scripts/slurm/cluster.sh up)"
    probe = subprocess.run(["sinfo", "-h", "-N", "-t", "idle,mix,alloc", "-o", "%N"], env=env, capture_output=True,
                           text=True, timeout=30)
    if probe.returncode != 0 or len(probe.stdout.split()) < 2:
        return f"SLURM cluster not up (sinfo: {probe.stderr.strip() or probe.stdout.strip()!r}; scripts/slurm/cluster.sh up)"
    return None


@pytest.fixture(scope="module")
def slurm_env() -> dict[str, str]:
    env = {**os.environ, "SLURM_CONF": os.environ.get("SLURM_CONF", str(DEFAULT_CONF)), "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", **ENV}
    problem = _cluster_problem(env)
    if problem:
        if os.environ.get("DISTILTRACK_REQUIRE_SLURM") == "1":
            pytest.fail(f"DISTILTRACK_REQUIRE_SLURM=1 but {problem}")
        pytest.skip(problem)
    return env


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthtrack(tmp_path_factory.mktemp("synth"), num_train=4, num_test=2, length=30, image_size=(160, 120), seed=3)


def data_args(synth: Path) -> list[str]:
    return ["--data.init_args.datasets", json.dumps([{"type": "synthtrack", "root": str(synth), "split": "train"}]),
            "--data.init_args.test", json.dumps({"type": "synthtrack", "root": str(synth), "split": "test"})]


def lightning(args: list[str], env: dict[str, str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lightning_app.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def wait_job(job: str, env: dict[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env, capture_output=True, text=True)
        if not queue.stdout.strip():
            return
        time.sleep(1)
    subprocess.run(["scancel", job], env=env)
    pytest.fail(f"SLURM job {job} still in the queue after {timeout} s")


@pytest.mark.timeout(600)
def test_a_2x2_sweep_runs_as_a_job_array_and_reports_four_auc_rows(slurm_env: dict[str, str], synth: Path,
                                                                   tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "slurm_2x2", "root": str(tmp_path / "runs"), "configs": SMOKE_CONFIGS, "args": data_args(synth),
        "grid": {"model.init_args.optimizer.init_args.lr": [1e-3, 3e-4], "model.init_args.loss_weights.giou": [2.0, 1.0]},
        "seeds": [0], "env": ENV,
        "resources": {"nodes": 1, "cpus_per_task": 1, "mem": "1500M", "time": "00:20:00", "max_parallel": 2},
    }))
    run = lightning(["sweep", "run", str(sweep), "--backend", "slurm", "--wait", "540"], slurm_env, tmp_path, 570)
    status = lightning(["sweep", "status", str(sweep), "--tail", "0"], slurm_env, tmp_path, 300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:] + status.stdout[-6000:]
    assert status.stdout.strip().splitlines()[-1].endswith(": 4 COMPLETED"), status.stdout
    again = lightning(["sweep", "run", str(sweep), "--backend", "slurm"], slurm_env, tmp_path, 300)
    assert "all 4 runs are finished" in again.stdout  # nothing is submitted twice
    report = lightning(["sweep", "report", str(sweep)], slurm_env, tmp_path, 120)
    assert report.returncode == 0, report.stderr[-3000:]
    rows = (tmp_path / "runs/report/runs.csv").read_text().splitlines()
    assert len(rows) == 5 and all(row.split(",")[-4] != "" for row in rows[1:])  # header + 4 runs with an AUC
    for path in (tmp_path / "runs").glob("*/results/**/metrics.json"):
        auc = json.loads(path.read_text())["metrics"]["pytracking"]["AUC"]
        run_name = path.relative_to(tmp_path / "runs").parts[0]
        assert f"{run_name}: AUC {auc:.2f}" in report.stdout
    assert (tmp_path / "runs/report/auc_vs_fps.png").is_file() and (tmp_path / "runs/report/bar_lr.png").is_file()


def _sweep_file(tmp_path: Path, synth: Path, name: str, root: Path, resources: dict, extra: list[str],
                test: bool = True) -> Path:
    sweep = tmp_path / f"{name}.yaml"
    sweep.write_text(yaml.safe_dump({"name": name, "root": str(root), "configs": SMOKE_CONFIGS, "test": test,
                                     "args": data_args(synth) + extra, "env": ENV,
                                     "resources": {"time": "00:20:00", "mem": "1500M", **resources}}))
    return sweep


@pytest.mark.timeout(400)
def test_a_two_node_fit_trains_with_world_size_2_and_each_node_draws_other_samples(slurm_env: dict[str, str],
                                                                                    synth: Path, tmp_path: Path) -> None:
    record = tmp_path / "samples"
    extra = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
             "--trainer.callbacks+=sample_recorder.SampleRecorder", f"--trainer.callbacks.out_dir={record}"]
    sweep = _sweep_file(tmp_path, synth, "ddp2", tmp_path / "runs", {"nodes": 2, "tasks_per_node": 1}, extra, test=False)
    run = lightning(["sweep", "run", str(sweep), "--backend", "slurm", "--wait", "340"], slurm_env, tmp_path, 360)
    log = "\n".join(p.read_text() for p in (tmp_path / "runs").glob("*/run.log"))
    assert run.returncode == 0, run.stdout[-2000:] + log[-4000:]
    assert "--trainer.num_nodes 2" in (tmp_path / "runs/.sweep/job-slurm.sh").read_text()
    ranks = [json.loads((record / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    a, b = (set(r["samples"]) for r in ranks)
    assert len(a) == 2 * 4 and len(b) == 2 * 4 and not a & b  # 2 batches of 4 each, disjoint shares
    assert "MEMBER: 2/2" in log  # Lightning's SLURMEnvironment: one process per fake node


@pytest.mark.timeout(600)
def test_a_job_signalled_mid_training_is_requeued_and_resumes_to_the_uninterrupted_metrics(
        slurm_env: dict[str, str], synth: Path, tmp_path: Path) -> None:
    extra = ["--trainer.max_epochs", "3", "--trainer.limit_train_batches", "40",
             "--data.init_args.samples_per_epoch", "160"]
    resources = {"nodes": 1, "signal_seconds": 60}
    signalled = _sweep_file(tmp_path, synth, "requeue", tmp_path / "signalled", resources, extra)
    reference = _sweep_file(tmp_path, synth, "reference", tmp_path / "reference", resources, extra)
    submitted = lightning(["sweep", "run", str(signalled), "--backend", "slurm"], slurm_env, tmp_path, 300)
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    job = submitted.stdout.split("array job ")[1].split()[0] + "_0"
    log = tmp_path / "signalled" / "base" / "run.log"  # a sweep without axes has one run, "base"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and "SLURM auto-requeueing enabled" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.5)
    assert "SLURM auto-requeueing enabled" in log.read_text(), log.read_text()[-3000:]  # handlers installed
    time.sleep(2)  # a few training steps in (3 epochs of 40 steps take longer)
    subprocess.run(["scancel", "--signal=USR1", job], env=slurm_env, check=True)  # the time-limit warning, now
    wait_job(job, slurm_env, 400)
    local = lightning(["sweep", "run", str(reference), "--backend", "local"], slurm_env, tmp_path, 400)
    assert local.returncode == 0, local.stdout[-2000:]
    text = log.read_text()
    assert "Handling auto-requeue signal" in text and "restarts=1" in text, text[-4000:]
    assert "Restoring states from" in text and "hpc_ckpt" in text
    assert (log.parent / "state").read_text().startswith("COMPLETED")
    metrics = [json.loads(next((tmp_path / r).rglob("metrics.json")).read_text())["metrics"] for r in ("signalled", "reference")]
    assert metrics[0] == metrics[1]
