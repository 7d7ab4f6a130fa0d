"""The job script of a sweep: one SLURM array task (or one local process) per run.

Each task runs ``lightning fit`` then ``lightning test`` of its run under ``srun`` (one task per
device, ``--trainer.num_nodes`` / ``--trainer.devices`` equal to the job's layout, so Lightning's
``SLURMEnvironment`` sets up DDP across the nodes), or one whole ``lightning pipeline`` chain. The
job asks SLURM for SIGUSR1 ``signal_seconds`` before its time limit; Lightning's handler saves
``<run>/fit/hpc_ckpt_<n>.ckpt`` and requeues the task, and the rerun's ``fit`` resumes from it.
A finished fit leaves ``<run>/fit.done``, so a rerun that was requeued during its test does not fit
again. The task records its state in ``<run>/state`` (``RUNNING`` / ``COMPLETED`` / ``FAILED``).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from lightning_app.sweep.spec import SEED_KEY, Resources, Run, Sweep, format_value, override_args

BACKENDS = ("slurm", "local")
STATE_FILE, LOG_FILE, RUN_FILE, FIT_DONE = "state", "run.log", "run.json", "fit.done"
WANDB_CONFIG = "configs/trainer/wandb.yaml"
WANDB_TEST_REPORT = "lightning_app.loggers.WandbTestReport"  # scores, FPS, plots, per-sequence table
TASK_VARIABLE = "SWEEP_TASK"  # the local backend's stand-in for SLURM_ARRAY_TASK_ID
REQUEUE_CALLBACK = "lightning_app.sweep.requeue.RequeueAtBatchEnd"  # takes the warning signal at a batch end


def layout(sweep: Sweep, backend: str) -> tuple[int, int]:
    """(num_nodes, devices) of every run: the job's layout on SLURM, one node here."""
    res = sweep.resources
    if backend == "slurm":
        return res.nodes, res.devices
    return 1, max(res.gpus_per_node, 1)


def _wandb_args(sweep: Sweep, run: Run, stage: str) -> list[str]:
    if not sweep.wandb:
        return []
    report = [f"--trainer.callbacks+={WANDB_TEST_REPORT}"] if stage == "test" else []
    tags = [f"{k.split('.')[-1]}={format_value(v)}" for k, v in run.values.items()]
    tags += [] if run.seed is None else [f"seed={run.seed}"]
    return ["--config", WANDB_CONFIG, "--trainer.logger.init_args.group", sweep.name,
            "--trainer.logger.init_args.name", f"{run.name}/{stage}", "--trainer.logger.init_args.job_type", stage,
            "--trainer.logger.init_args.tags", _json(tags),
            "--trainer.logger.init_args.save_dir", str(run.dir / "wandb"),
            "--trainer.logger.init_args.sweep_values", _json(run.values | ({} if run.seed is None else {SEED_KEY: run.seed})),
            *report]


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def stage_args(sweep: Sweep, run: Run, stage: str, backend: str) -> list[str]:
    """The `lightning fit` / `lightning test` arguments of one run (without ``--ckpt_path``)."""
    nodes, devices = layout(sweep, backend)
    args = [stage]
    for config in sweep.configs:
        args += ["--config", config]
    args += _wandb_args(sweep, run, stage)
    args += override_args(run.values)
    if run.seed is not None:
        args += [f"--{SEED_KEY}", str(run.seed)]
    args += ["--trainer.default_root_dir", str(run.dir / stage), "--trainer.num_nodes", str(nodes),
             "--trainer.devices", str(devices)]
    if nodes * devices > 1:
        args += ["--trainer.strategy", "ddp"]
    if stage == "fit" and backend == "slurm":
        args += [f"--trainer.callbacks+={REQUEUE_CALLBACK}"]
    if stage == "test":
        args += ["--model.init_args.results_dir", str(run.dir / "results")]
    return args + list(sweep.args)


def pipeline_args(sweep: Sweep, run: Run, backend: str) -> list[str]:
    nodes, devices = layout(sweep, backend)
    args = ["pipeline", str(sweep.pipeline), "--root", str(run.dir / "chain")]
    for config in sweep.configs:
        args += ["--config", config]
    extra = override_args(run.values) + ([f"--{SEED_KEY}", str(run.seed)] if run.seed is not None else [])
    extra += ["--trainer.num_nodes", str(nodes), "--trainer.devices", str(devices), *sweep.args]
    return [*args, "--", *extra]


def _sbatch_lines(sweep: Sweep, indices: list[int]) -> list[str]:
    res: Resources = sweep.resources
    array = ",".join(str(i) for i in indices) + (f"%{res.max_parallel}" if res.max_parallel else "")
    lines = [f"--job-name={sweep.name}", f"--array={array}", f"--nodes={res.nodes}",
             f"--ntasks-per-node={res.devices}", f"--signal=USR1@{res.signal_seconds}", "--requeue",
             "--open-mode=append", f"--output={sweep.root.resolve() / '.slurm' / '%A_%a.out'}"]
    optional = {"cpus-per-task": res.cpus_per_task, "mem": res.mem, "time": res.time, "partition": res.partition,
                "account": res.account, "qos": res.qos, "constraint": res.constraint}
    lines += [f"--{k}={v}" for k, v in optional.items() if v is not None]
    if res.gpus_per_node:
        lines.append(f"--gres=gpu:{res.gpus_per_node}")
    return [f"#SBATCH {line}" for line in lines] + [
        line if line.startswith("#SBATCH") else f"#SBATCH {line}" for line in res.extra_sbatch]


def _q(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)


def render(sweep: Sweep, runs: list[Run], backend: str, python: str = sys.executable) -> str:
    """The bash job script for ``runs`` (SLURM: an array over their indices; local: run with ``SWEEP_TASK=i``)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {BACKENDS}")
    head = ["#!/bin/bash"]
    if backend == "slurm":
        head += _sbatch_lines(sweep, [r.index for r in runs])
    head += [f"# lightning sweep {sweep.name} ({sweep.path}): task i runs run i of the sweep.",
             "set -euo pipefail", f"cd {shlex.quote(str(Path.cwd()))}"]
    head += [f"export {k}={shlex.quote(v)}" for k, v in sweep.env.items()]
    launch = "srun --kill-on-bad-exit=1" if backend == "slurm" else ""
    task = "${SLURM_ARRAY_TASK_ID}" if backend == "slurm" else f"${{{TASK_VARIABLE}}}"
    head += [f"LIGHTNING=({shlex.quote(python)} -m lightning_app.cli)", f"LAUNCH=({launch})",
             f'case "{task}" in']
    for run in runs:
        head.append(f"  {run.index}) RUN_DIR={shlex.quote(str(run.dir.resolve()))}")
        if sweep.pipeline:
            head.append(f"     PIPELINE=({_q(pipeline_args(sweep, run, backend))}) ;;")
        else:
            head.append(f"     FIT=({_q(stage_args(sweep, run, 'fit', backend))})")
            head.append(f"     TEST=({_q(stage_args(sweep, run, 'test', backend))}) ;;")
    head += [f'  *) echo "task {task} is not a run of this sweep" >&2; exit 2 ;;', "esac"]
    job = ("${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}" if backend == "slurm" else "local-$$")
    body = f"""mkdir -p "$RUN_DIR"
exec >>"$RUN_DIR/{LOG_FILE}" 2>&1
mark() {{ echo "$1 job={job} restarts=${{SLURM_RESTART_COUNT:-0}} $(date -u +%FT%TZ)" >"$RUN_DIR/{STATE_FILE}"; }}
trap 'rc=$?; [ "$rc" = 0 ] || mark FAILED' EXIT
mark RUNNING
echo "== $(date -u +%FT%TZ) task {task} start (restarts=${{SLURM_RESTART_COUNT:-0}})"
"""
    if sweep.pipeline:
        body += '"${LAUNCH[@]}" "${LIGHTNING[@]}" "${PIPELINE[@]}"\n'
    else:
        body += f"""if [ ! -e "$RUN_DIR/{FIT_DONE}" ]; then
  "${{LAUNCH[@]}}" "${{LIGHTNING[@]}}" "${{FIT[@]}}"
  touch "$RUN_DIR/{FIT_DONE}"
fi
"""
        if sweep.test:
            body += """CKPT=$(find "$RUN_DIR/fit" -name last.ckpt -printf '%T@ %p\\n' | sort -n | tail -n 1 | cut -d' ' -f2-)
[ -n "$CKPT" ] || { echo "no last.ckpt under $RUN_DIR/fit (the fit config must keep ModelCheckpoint(save_last=true))"; exit 1; }
"${LAUNCH[@]}" "${LIGHTNING[@]}" "${TEST[@]}" --ckpt_path "$CKPT"
"""
    body += "mark COMPLETED\n"
    return "\n".join(head) + "\n" + body
