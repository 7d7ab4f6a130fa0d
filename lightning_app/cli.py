"""The `lightning` command: LightningCLI (fit / validate / test / predict) plus DistilTrack's own tools.

    lightning fit --config configs/ostrack_256.yaml [--config configs/presets/cpu_smoke.yaml]
    lightning test --config ... --ckpt_path run.ckpt
    lightning make-synthetic --out data/synthtrack
    lightning analyze --dataset-root ... --results NAME=DIR ...
    lightning sweep run|status|report configs/sweeps/<sweep>.yaml [--backend slurm|local]

Errors a user fixes by editing a config (missing dataset root, missing checkpoint) are printed as
one line naming the file and the key, never as a traceback.
"""

from __future__ import annotations

import sys
from typing import Callable

from trackers.errors import SetupError

TOOL_COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module:function taking argv, one-line help)
    "make-synthetic": ("lightning_app.commands.make_synthetic:main", "write the SynthTrack benchmark (LaSOT layout)"),
    "analyze": ("lightning_app.commands.analyze:main", "metrics table and plots from raw result folders"),
    "benchmark": ("lightning_app.commands.benchmark:main", "speed benchmarks: `benchmark model` / `benchmark data`"),
    "track": ("lightning_app.commands.track:main", "run a tracker on a video file or an image folder"),
    "pipeline": ("lightning_app.commands.pipeline:main", "run a multi-stage training chain in order"),
    "calibrate": ("lightning_app.commands.calibrate:main", "DyTrack: speed-accuracy curve and exit thresholds"),
    "sweep": ("lightning_app.commands.sweep:main", "ablation sweeps on SLURM or here: `sweep run|status|report`"),
    "export": ("lightning_app.commands.export:main", "per-frame network as ONNX graphs + manifest, checked on onnxruntime"),
}

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def _load(target: str) -> Callable[[list[str]], int | None]:
    module_name, func = target.split(":")
    module = __import__(module_name, fromlist=[func])
    return getattr(module, func)


def _usage() -> str:
    lines = ["usage: lightning COMMAND [options]", "", "training and evaluation (LightningCLI):"]
    lines += [f"  {c:<16} {c} with --config configs/<experiment>.yaml" for c in LIGHTNING_COMMANDS]
    lines += ["", "DistilTrack tools:"]
    lines += [f"  {name:<16} {help_}" for name, (_, help_) in TOOL_COMMANDS.items()]
    lines += ["", "Run `lightning COMMAND --help` for a command's options."]
    return "\n".join(lines)


def run_lightning_cli(args: list[str]) -> None:
    """LightningCLI with DistilTrack's parser (subclass mode, links, keyed callbacks: ``lightning_app.config_loading``)."""
    from lightning_app.config_loading import DistilTrackCLI

    sys.argv = [sys.argv[0], *args]  # LightningCLI reads sys.argv; passing args as well makes it warn
    DistilTrackCLI(save_config_kwargs={"overwrite": True})


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    try:
        if argv[0] in TOOL_COMMANDS:
            return int(_load(TOOL_COMMANDS[argv[0]][0])(argv[1:]) or 0)
        run_lightning_cli(argv)
        return 0
    except Exception as err:  # noqa: BLE001 - only user-fixable errors are shortened, the rest re-raised
        from lightning_app.config_loading import setup_error_in_chain

        setup_error = setup_error_in_chain(err)
        if setup_error is None:
            raise
        print(f"error: {setup_error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
