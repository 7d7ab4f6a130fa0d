"""`lightning pipeline CHAIN`: run a multi-stage training chain in order, each stage fed by the previous one.

    lightning pipeline mixformerv2_b
    lightning pipeline mixformerv2_s --config configs/presets/cpu_smoke.yaml --root outputs/smoke
    lightning pipeline mixformerv2_b --use mixvit_b=mixformer_vit_base_online.pth.tar   (official teacher)
    lightning pipeline mixformerv2_b --dry-run -- --trainer.devices 4

A chain is a YAML under ``configs/pipelines/`` (or any path): a ``root`` folder and a list of
stages, each with its experiment ``config`` and ``inputs`` mapping config keys to earlier stages,
e.g. ``{model.init_args.teacher_checkpoint: b_stage1}``. A stage may name ``presets``: fragments
that follow a given ``--config`` file (matched by resolved path) for that stage only, e.g. what
``cpu_smoke.yaml`` cannot shrink generically (a teacher's width, the number of bins, a
``layer_decay`` schedule); crop sizes need none (they follow ``data``).

Each stage is an ordinary ``lightning fit`` in its own process (so DDP launches per stage),
logging under ``<root>/<stage>``; when it ends it writes ``<root>/<stage>/final.ckpt`` and a
``stage.json`` record. Then the stage's model is evaluated: ``lightning test --ckpt_path
<root>/<stage>/final.ckpt`` (results under ``<root>/<stage>/results``; finished sequences are not
tracked again) and the per-frame network call is timed in this process (``--latency-warmup`` / ``--latency-iters``,
the defaults of `lightning benchmark model`); a table of every stage's
AUC, precision and speed ends the run (``--no-eval`` skips this). A failed evaluation is reported
in the table, never stops the chain.

A chain may also list ``comparisons`` (``{label, stage, baseline}``): after the table each prints
the stage's AUC against the baseline's (difference and ratio), e.g. an ablation's two arms; the
table and the comparisons are also written to ``<root>/summary.json``. ``seeds: [0, 1]`` runs every
stage not marked ``shared: true`` once per seed (``<root>/<stage>/seed<k>``, ``--seed_everything k``,
fed by the same seed's earlier stages); stages and comparisons are then reported as mean +- spread
over the seeds, paired seed by seed. ``baselines: {first_box: configs/baselines/first_box.yaml}``
tests checkpoint-free trackers on the same benchmark, and each stage's AUC is given as a multiple
of theirs. ``--seed K`` runs one seed only (two processes can run two seeds at once); a later call
without it reuses every finished run and reports over all seeds.

Finished stages are reused on the next call when they were made with the same configs;
``--use STAGE=PATH`` replaces a stage by any checkpoint (a Lightning ``.ckpt`` or an official
``.pth.tar``; such a stage is not evaluated) and ``--rerun STAGE`` runs it again.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path

from lightning_app.commands.benchmark import LATENCY_ITERS, LATENCY_WARMUP, check_latency_calls
from lightning_app.pipeline.chain import Chain, load_chain
from lightning_app.pipeline.evaluate import measure_speed
from lightning_app.pipeline.report import format_comparisons, format_spreads, format_summary, write_summary
from lightning_app.pipeline.runner import run_chain
from trackers.errors import SetupError
from trackers.safe_unpickling import check_checkpoint_file


def _pairs(values: Sequence[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise SetupError(f"{flag} expects STAGE=PATH, got {value!r}")
        out.append((name, rest))
    return out


def main(argv: list[str]) -> int:
    argv, extra_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(
        prog="lightning pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("chain", help="chain name under configs/pipelines/ (mixformerv2_b, mixformerv2_s) or a YAML path")
    parser.add_argument("--config", action="append", default=[], help="extra config for every stage (repeatable)")
    parser.add_argument("--stage-config", action="append", default=[], metavar="STAGE=PATH", help="extra config for one stage")
    parser.add_argument("--use", action="append", default=[], metavar="STAGE=PATH", help="skip a stage, use this checkpoint")
    parser.add_argument("--rerun", action="append", default=[], metavar="STAGE", help="run a finished stage again")
    parser.add_argument("--until", metavar="STAGE", help="stop after this stage")
    parser.add_argument("--root", type=Path, help="output folder of the chain (default: the chain's root)")
    parser.add_argument("--seed", action="append", type=int, default=[],
                        help="run only this seed of a seeded chain (repeatable; e.g. one process per seed)")
    parser.add_argument("--no-eval", action="store_true", help="do not test and time each stage's model")
    parser.add_argument("--dry-run", action="store_true", help="print the stage commands only")
    parser.add_argument("--latency-warmup", type=int, default=LATENCY_WARMUP, help="untimed per-frame calls")
    parser.add_argument("--latency-iters", type=int, default=LATENCY_ITERS, help="timed per-frame calls")
    args = parser.parse_args(argv)
    check_latency_calls(args.latency_warmup, args.latency_iters)
    chain = load_chain(args.chain)
    if args.root is not None:
        chain = dataclasses.replace(chain, root=args.root)
    if args.seed:
        unknown = sorted(set(args.seed) - set(chain.seeds))
        if unknown:
            raise SetupError(f"--seed {unknown[0]}: chain {chain.name} has seeds {list(chain.seeds) or 'none'}")
        chain = dataclasses.replace(chain, seeds=tuple(k for k in chain.seeds if k in args.seed))
    use = dict(_pairs(args.use, "--use"))
    for path in use.values():
        if Path(path).exists():  # a missing one is reported by the chain, naming its stage
            check_checkpoint_file(path)  # refused here, in one line, rather than inside the stage that reads it
    stage_configs: dict[str, list[str]] = {}
    for name, path in _pairs(args.stage_config, "--stage-config"):
        stage_configs.setdefault(name, []).append(path)
    run = run_chain(
        chain,
        extra_configs=args.config,
        stage_configs=stage_configs,
        use=use,
        rerun=args.rerun,
        until=args.until,
        extra_args=extra_args,
        dry_run=args.dry_run,
        evaluate=not args.no_eval,
        measure=functools.partial(measure_speed, warmup=args.latency_warmup, iters=args.latency_iters),
    )
    if not args.dry_run:
        last = list(run.checkpoints)[-1]
        print(f"[pipeline] {chain.name}: finished; {last} -> {run.checkpoints[last]}")
        if run.evaluations:
            print(format_summary(run.evaluations, args.latency_iters))
            print("\n".join([*format_spreads(chain, run.evaluations), *format_comparisons(chain, run.evaluations)]))
            print(f"[pipeline] summary: {write_summary(chain, run.evaluations)}")
    return 0
