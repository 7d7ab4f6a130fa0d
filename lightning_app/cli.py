"""The `lightning` command: LightningCLI (fit / validate / test / predict) plus DistilTrack's own tools.

    lightning fit --config configs/ostrack_256.yaml [--config configs/presets/cpu_smoke.yaml]
    lightning test --config ... --ckpt_path run.ckpt
    lightning make-synthetic --out data/synthtrack
    lightning analyze --dataset-root ... --results NAME=DIR ...

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
    """LightningCLI in subclass mode: the YAML's class_path picks the method and the data module."""
    from lightning.pytorch.cli import LightningCLI

    from trackers.methods.base import TrackingModule
    from trackers.safe_unpickling import check_ckpt_path

    class DistilTrackCLI(LightningCLI):
        """Checks dataset roots in the launching process, before the Trainer or any DDP process starts."""

        def instantiate_trainer(self, **kwargs):  # noqa: ANN003, ANN201 - LightningCLI's signature
            check = getattr(self.datamodule, "check_roots", None)
            if check is not None and self.subcommand is not None:
                check(self.subcommand)
            return super().instantiate_trainer(**kwargs)

        def parse_arguments(self, parser, args) -> None:  # noqa: ANN001 - LightningCLI's signature
            """Refuse a ``--ckpt_path`` that is not plain data before LightningCLI or the Trainer unpickle it."""
            super().parse_arguments(parser, args)
            if self.config.get("subcommand"):
                check_ckpt_path(self.config[self.config["subcommand"]].get("ckpt_path"))

    sys.argv = [sys.argv[0], *args]  # LightningCLI reads sys.argv; passing args as well makes it warn
    DistilTrackCLI(
        model_class=TrackingModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
    )


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
        setup_error = _setup_error_in_chain(err)
        if setup_error is None:
            raise
        print(f"error: {setup_error}", file=sys.stderr)
        return 2


def _setup_error_in_chain(err: BaseException | None) -> SetupError | None:
    """The SetupError behind ``err``: jsonargparse wraps errors raised while instantiating classes."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, SetupError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
