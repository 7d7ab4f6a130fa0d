"""Where each run of a sweep stands: its ``state`` file, corrected by what SLURM's queue says.

A task writes ``RUNNING`` / ``COMPLETED`` / ``FAILED`` into ``<run>/state``; ``submit`` writes
``PENDING`` with the array task's id. A task still in ``squeue`` shows the queue's state (a requeued
task is PENDING again, even though its last attempt ended); a RUNNING or PENDING one that is gone
from the queue (killed, node lost) is LOST. FAILED and LOST runs are submitted again; COMPLETED,
PENDING and RUNNING ones are not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from lightning_app.sweep.jobscript import LOG_FILE, STATE_FILE
from lightning_app.sweep.spec import Run

ACTIVE = ("PENDING", "RUNNING")
RESUBMIT = ("NEW", "FAILED", "LOST")


@dataclass(frozen=True)
class RunState:
    state: str  # NEW | PENDING | RUNNING | COMPLETED | FAILED | LOST
    job: str | None = None
    detail: str = ""


def queue_states() -> dict[str, str]:
    """``{job id: state}`` of every job in SLURM's queue, array tasks as ``<array>_<task>`` (empty without SLURM)."""
    if shutil.which("squeue") is None:
        return {}
    result = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        return {}
    return dict(line.split(None, 1) for line in result.stdout.splitlines() if line.strip())


def _local_alive(job: str) -> bool:
    try:
        os.kill(int(job.removeprefix("local-")), 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return False
    return True


def run_state(run: Run, queue: dict[str, str]) -> RunState:
    path = run.dir / STATE_FILE
    if not path.is_file():
        return RunState("NEW")
    words = path.read_text().split()
    state = words[0] if words else "NEW"
    fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    job = fields.get("job")
    detail = f"restarts={fields['restarts']}" if fields.get("restarts", "0") != "0" else ""
    if job and job in queue:
        return RunState(queue[job], job, detail)
    if state in ACTIVE:
        alive = _local_alive(job) if job and job.startswith("local-") else False
        return RunState(state if alive else "LOST", job, detail)
    return RunState(state, job, detail)


def log_tail(run: Run, lines: int) -> list[str]:
    path = run.dir / LOG_FILE
    if not path.is_file() or lines <= 0:
        return []
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 200 * lines))
        return f.read().decode(errors="replace").splitlines()[-lines:]


def write_state(run: Run, state: str, job: str) -> None:
    run.dir.mkdir(parents=True, exist_ok=True)
    (run.dir / STATE_FILE).write_text(f"{state} job={job} restarts=0\n")


def read_states(runs: list[Run] | tuple[Run, ...]) -> dict[str, RunState]:
    queue = queue_states()
    return {run.name: run_state(run, queue) for run in runs}

