"""`lightning sweep run|status|report SWEEP.yaml`: ablation sweeps on SLURM (or here) and their table.

    lightning sweep run configs/sweeps/ostrack_smoke.yaml --backend slurm     # one job array, sbatch
    lightning sweep run configs/sweeps/ostrack_smoke.yaml --backend local -j 2
    lightning sweep run configs/sweeps/ostrack_smoke.yaml --dry-run           # print the job script
    lightning sweep status configs/sweeps/ostrack_smoke.yaml --tail 5
    lightning sweep report configs/sweeps/ostrack_smoke.yaml                  # <root>/report/

The sweep YAML is described in ``lightning_app/sweep/spec.py``. Submitting again skips finished,
queued and running runs and resubmits failed or lost ones. ``run --wait`` follows a SLURM array
until every run has ended (tests and scripts).
"""

from __future__ import annotations

import argparse
import time

from lightning_app.sweep.jobscript import BACKENDS, render
from lightning_app.sweep.spec import Sweep, load_sweep
from lightning_app.sweep.state import ACTIVE, log_tail, read_states
from lightning_app.sweep.submit import run_local, runs_to_submit, submit_slurm

POLL_SECONDS = 2.0


def _run(sweep: Sweep, args: argparse.Namespace) -> int:
    todo = runs_to_submit(sweep) if not args.force else list(sweep.runs)
    if args.dry_run:
        print(render(sweep, todo or list(sweep.runs), args.backend))
        return 0
    skipped = len(sweep.runs) - len(todo)
    if not todo:
        print(f"[sweep] {sweep.name}: all {len(sweep.runs)} runs are finished, queued or running")
        return 0
    print(f"[sweep] {sweep.name}: submitting {len(todo)} runs ({skipped} skipped: finished, queued or running)")
    if args.backend == "local":
        codes = run_local(sweep, todo, parallel=args.jobs)
        failed = [name for name, code in codes.items() if code != 0]
        print(f"[sweep] {sweep.name}: {len(codes) - len(failed)} finished, {len(failed)} failed {failed or ''}")
        return 1 if failed else 0
    job = submit_slurm(sweep, todo)
    print(f"[sweep] {sweep.name}: SLURM array job {job} (`lightning sweep status {sweep.path}`)")
    if args.wait:
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            states = read_states(sweep.runs)
            if not any(s.state in ACTIVE for s in states.values()):
                break
            time.sleep(POLL_SECONDS)
        states = read_states(sweep.runs)
        print(_status_lines(sweep, 0))
        return 0 if all(s.state == "COMPLETED" for s in states.values()) else 1
    return 0


def _status_lines(sweep: Sweep, tail: int) -> str:
    states = read_states(sweep.runs)
    width = max(len(r.name) for r in sweep.runs)
    lines = []
    for run in sweep.runs:
        s = states[run.name]
        lines.append(f"{run.name:<{width}}  {s.state:<9} {s.job or '-'} {s.detail}".rstrip())
        lines += [f"    | {line}" for line in log_tail(run, tail)]
    counts = {k: sum(s.state == k for s in states.values()) for k in dict.fromkeys(s.state for s in states.values())}
    lines.append(f"[sweep] {sweep.name}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return "\n".join(lines)


def _report(sweep: Sweep) -> int:
    from lightning_app.sweep.report import FIGURES, write_report  # torch and matplotlib: only for the report

    out, runs, ablation, note = write_report(sweep)
    print(f"[sweep] {sweep.name}: {len(runs)} runs with scores")
    for row in runs:
        figures = "  ".join(f"{k} {row[k]:.2f}" for k in FIGURES if row.get(k) is not None)
        print(f"  {row['run']}{'/' + row['stage'] if row['stage'] else ''}: {figures}")
    print((out / "ablation.md").read_text(), end="")
    print(f"[sweep] report: {out} (runs.csv, ablation.csv, ablation.md, *.png)" + (f"; W&B: {note}" if note else ""))
    return 0 if runs else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lightning sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="submit the sweep's unfinished runs")
    run.add_argument("sweep")
    run.add_argument("--backend", choices=BACKENDS, default="slurm")
    run.add_argument("-j", "--jobs", type=int, default=1, help="local backend: runs at a time")
    run.add_argument("--dry-run", action="store_true", help="print the job script, submit nothing")
    run.add_argument("--force", action="store_true", help="submit every run, finished or not")
    run.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                     help="slurm backend: follow the array until every run ended (at most SECONDS)")
    status = sub.add_parser("status", help="each run's state and the tail of its log")
    status.add_argument("sweep")
    status.add_argument("--tail", type=int, default=3, help="log lines per run")
    report = sub.add_parser("report", help="ablation table (CSV/Markdown), plots, W&B table")
    report.add_argument("sweep")
    args = parser.parse_args(argv)
    sweep = load_sweep(args.sweep)
    if args.action == "run":
        return _run(sweep, args)
    if args.action == "status":
        print(_status_lines(sweep, args.tail))
        return 0
    return _report(sweep)
