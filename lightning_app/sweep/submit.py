"""Submitting a sweep: ``sbatch`` of one job array (SLURM) or the same job script run here (local).

Runs that are COMPLETED, PENDING or RUNNING are left alone; new, failed and lost ones are (re)submitted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lightning_app.sweep.jobscript import RUN_FILE, TASK_VARIABLE, render
from lightning_app.sweep.spec import Run, Sweep
from lightning_app.sweep.state import RESUBMIT, read_states, write_state
from trackers.errors import SetupError

SWEEP_DIR = ".sweep"  # under the sweep's root: the job scripts and the sweep's runs


def runs_to_submit(sweep: Sweep) -> list[Run]:
    states = read_states(sweep.runs)
    return [run for run in sweep.runs if states[run.name].state in RESUBMIT]


def _write_run_records(sweep: Sweep, runs: list[Run]) -> None:
    for run in runs:
        run.dir.mkdir(parents=True, exist_ok=True)
        record = {"sweep": sweep.name, "run": run.name, "setting": run.setting, "values": run.values,
                  "seed": run.seed, "axes": list(sweep.axes), "configs": list(sweep.configs)}
        (run.dir / RUN_FILE).write_text(json.dumps(record, indent=2))
        log = run.dir / "run.log"
        if log.exists():
            log.rename(run.dir / "run.log.previous")  # the failed attempt's log, kept once


def write_job_script(sweep: Sweep, runs: list[Run], backend: str) -> Path:
    path = sweep.root / SWEEP_DIR / f"job-{backend}.sh"
    path.parent.mkdir(parents=True, exist_ok=True)
    (sweep.root / ".slurm").mkdir(exist_ok=True)
    path.write_text(render(sweep, runs, backend))
    path.chmod(0o755)
    return path


def submit_slurm(sweep: Sweep, runs: list[Run]) -> str:
    """``sbatch`` the array of ``runs``; returns the array job id."""
    if shutil.which("sbatch") is None:
        raise SetupError("sbatch not found: run `lightning sweep run` on a SLURM login node, or use --backend local")
    _write_run_records(sweep, runs)
    script = write_job_script(sweep, runs, "slurm")
    result = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise SetupError(f"sbatch {script} failed: {result.stderr.strip()}")
    job = result.stdout.strip().split(";")[0]
    for run in runs:
        write_state(run, "PENDING", f"{job}_{run.index}")
    return job


def run_local(sweep: Sweep, runs: list[Run], parallel: int = 1) -> dict[str, int]:
    """Run the job script of each of ``runs`` here, ``parallel`` at a time; ``{run name: exit code}``."""
    _write_run_records(sweep, runs)
    script = write_job_script(sweep, runs, "local")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}  # not a SLURM task, even inside salloc

    def one(run: Run) -> int:
        return subprocess.run(["bash", str(script)], env={**env, TASK_VARIABLE: str(run.index)}).returncode

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        codes = list(pool.map(one, runs))
    return {run.name: code for run, code in zip(runs, codes, strict=True)}


