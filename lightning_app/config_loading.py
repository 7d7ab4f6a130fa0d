"""The one parser of DistilTrack's configs: LightningCLI with the project's links, used by `fit` and by the tools.

`lightning fit/validate/test` and the tools (`track`, `benchmark model`, `pipeline`'s speed
measurement, `benchmark data`) all compose ``--config`` files through :class:`DistilTrackCLI`, so
a tool builds exactly the model and data module that `fit` builds from the same files, with the
same merge rules, defaults, links and ``--key value`` overrides.

What the parser adds to LightningCLI's (``add_arguments_to_parser``):

- **crop sizes are set once**, in the data module (``data.init_args.{template,search}.size``): the
  network's, the teacher's and the online tracker's ``template_size`` / ``search_size`` follow
  them (``link_arguments``; a link whose target a method does not have is skipped, e.g. a
  baseline without network or a student whose teacher is null). A config file or argument that
  sets one of those targets to another value is refused (``check_linked_sizes``): the link would
  overwrite it silently;
- **keyed callbacks**: the callbacks a recipe tunes have their own optional top-level key
  (``OPTIONAL_CALLBACKS``: ``layer_decay``, ``candidate_elimination``, ``snapshots``), so a
  fragment overrides one argument (``layer_decay: {decay_epochs: 2}``) or drops one
  (``snapshots: null``) instead of copying the whole ``trainer.callbacks`` list; they are added to
  the Trainer's callbacks after that list. Callbacks a method always needs (``TeacherFreeze``) come
  from the method's ``configure_callbacks``;
- **the test tracker's runtime**: ``--precision fp32|bf16|int8`` and ``--backend torch|onnxruntime``
  (``trackers.inference.runtime``), applied by `lightning test` to the tracker it builds; the result
  folder carries a non-default one (``<tracker>_bf16``). Other subcommands refuse a non-default value
  (training precision is ``--trainer.precision``);
- ``trainer.use_distributed_sampler`` defaults to false: ``TrackingDataModule``'s pair sampler shards
  itself across ranks, Lightning's sampler would replace it.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ActionConfigFile, Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from trackers.errors import SetupError
from trackers.inference.runtime import BACKENDS, DEFAULT_BACKEND, DEFAULT_PRECISION, PRECISIONS
from trackers.safe_unpickling import check_ckpt_path

# Where the crop sizes are read (the data module's crops) and every key that must equal them.
CROP_SIZE_LINKS: dict[str, tuple[str, ...]] = {
    f"data.init_args.{crop}.size": (
        f"model.init_args.network.init_args.{crop}_size",
        f"model.init_args.teacher.init_args.{crop}_size",
        f"model.init_args.tracker.{crop}_size",
    )
    for crop in ("template", "search")
}
# key -> callback class ("module:Class"); each is null unless the config sets it (class_path may be left out).
OPTIONAL_CALLBACKS: dict[str, str] = {
    "layer_decay": "callbacks.layer_decay:LayerDecay",  # progressive depth pruning (MixFormerV2 stage 2)
    "candidate_elimination": "callbacks.candidate_elimination:CandidateEliminationSchedule",  # OSTrack's CE warm-up
    "snapshots": "lightning.pytorch.callbacks:ModelCheckpoint",  # the official periodic snapshots
    "stage_swap": "callbacks.stochastic_stage_swap:StochasticStageSwap",  # CompressTracker's replacement training
    "teacher_freeze": "callbacks.teacher_freeze:TeacherFreeze",  # shows a method's teacher freezing in the config
}
TRAINER_DEFAULTS = {"use_distributed_sampler": False}
RUNTIME_SUBCOMMANDS = ("test",)  # the subcommands whose tracker takes --precision / --backend


class ConfigToLoggers(SaveConfigCallback):
    """LightningCLI's ``config.yaml`` in the log folder, and the whole resolved config (trainer, model, data)
    as flat keys in every W&B run, so W&B's table, grouping and parallel coordinates see each setting."""

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        import yaml

        from lightning_app.loggers import DistilTrackWandbLogger

        loggers = [lg for lg in trainer.loggers if isinstance(lg, DistilTrackWandbLogger)]
        if loggers:
            resolved = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
            for logger in loggers:
                logger.log_hyperparams(resolved)


class DistilTrackCLI(LightningCLI):
    """LightningCLI in subclass mode (the YAML's class_path picks the method and the data module) plus the links.

    Dataset roots are checked in the launching process, before the Trainer or any DDP process starts.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from trackers.methods.base import TrackingModule

        kwargs.setdefault("model_class", TrackingModule)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("trainer_defaults", TRAINER_DEFAULTS)
        kwargs.setdefault("auto_configure_optimizers", False)  # the method injects its own (model.init_args.optimizer)
        kwargs.setdefault("save_config_callback", ConfigToLoggers)
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for source, targets in CROP_SIZE_LINKS.items():
            for target in targets:
                parser.link_arguments(source, target)
        for key, target in OPTIONAL_CALLBACKS.items():
            module, name = target.split(":")
            callback = getattr(importlib.import_module(module), name)
            parser.add_lightning_class_args(callback, key, subclass_mode=True, required=False)
        parser.add_argument("--precision", type=Literal[PRECISIONS], default=DEFAULT_PRECISION,  # type: ignore[valid-type]
                            help="`lightning test`: the tracker's precision (bf16 autocast, int8 dynamic "
                                 "quantisation of the Linear layers, CPU); not the training precision")
        parser.add_argument("--backend", type=Literal[BACKENDS], default=DEFAULT_BACKEND,  # type: ignore[valid-type]
                            help="`lightning test`: run the tracker's network in PyTorch or ONNX Runtime (CPU)")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Also refuses a ``--ckpt_path`` that is not plain data, before LightningCLI (its hparams) or the
        Trainer unpickle it."""
        super().parse_arguments(parser, args)
        check_linked_sizes(list(sys.argv[1:] if args is None else args), self.config)
        subcommand = self.config.get("subcommand")
        if subcommand:
            check_ckpt_path(self.config[subcommand].get("ckpt_path"))
            check_runtime_subcommand(subcommand, self.config[subcommand])

    def before_test(self) -> None:
        """The test tracker's ``--precision`` / ``--backend`` (applied when the tracker is built)."""
        config = self.config[self.subcommand]
        self.model.set_runtime(config.get("precision", DEFAULT_PRECISION), config.get("backend", DEFAULT_BACKEND))

    def instantiate_trainer(self, **kwargs: Any):  # noqa: ANN201 - LightningCLI's signature
        check = getattr(self.datamodule, "check_roots", None)
        if check is not None and self.subcommand is not None:
            check(self.subcommand)
        return super().instantiate_trainer(**kwargs)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Any:
        # an optional callback key left null (no ``layer_decay``) adds no callback
        return super()._instantiate_trainer(config, [c for c in callbacks if c is not None])


def check_runtime_subcommand(subcommand: str, config: Namespace) -> None:
    """``--precision`` / ``--backend`` are test-time tracker options: refused, in one line, elsewhere."""
    precision, backend = config.get("precision", DEFAULT_PRECISION), config.get("backend", DEFAULT_BACKEND)
    if subcommand not in RUNTIME_SUBCOMMANDS and (precision, backend) != (DEFAULT_PRECISION, DEFAULT_BACKEND):
        raise SetupError(f"--precision {precision} --backend {backend}: `lightning {subcommand}` does not run the "
                         f"tracker; these apply to `lightning test` (training precision: --trainer.precision)")


class _ConfigBuilder(DistilTrackCLI):
    """The same parsing and instantiation of model and data (and callbacks) as `fit`, without a Trainer."""

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self.config = parser.parse_args(args)  # a tool's own sys.argv is not LightningCLI's business
        check_linked_sizes(list(args), self.config)

    def instantiate_trainer(self, **kwargs: Any) -> None:
        return None


class _ParserOnly(DistilTrackCLI):
    """Sets up the parser and stops: nothing is parsed, seeded or instantiated."""

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self.config = Namespace(seed_everything=False)

    def instantiate_classes(self) -> None:
        pass


@functools.lru_cache(maxsize=1)
def _parser() -> LightningArgumentParser:
    return _ParserOnly(run=False, parser_kwargs={"exit_on_error": False}).parser


def parse_configs(configs: Sequence[str | Path], overrides: Sequence[str] = ()) -> Namespace:
    """The composed configs as `fit` parses them (defaults, links, checks of every class's arguments), uninstantiated.

    Cheap (one parser per process, no network built, no file read but the configs): for checking
    that configs parse, and for reading a composed value.
    """
    args = config_args(configs, overrides)
    try:
        cfg = _parser().parse_args(args)
    except Exception as err:  # noqa: BLE001 - a parse error becomes one line
        raise SetupError(f"{' + '.join(map(str, configs))}: {_first_line(err)}") from err
    check_linked_sizes(args, cfg)
    return cfg


def check_linked_sizes(args: Sequence[str], cfg: Namespace) -> None:
    """Refuse a config file or argument that sets a linked crop size to another value than the data's.

    A link overwrites its target silently; a size given there and not in ``data`` would be a no-op.
    """
    sub = cfg.get("subcommand")
    parsed = cfg[sub] if sub else cfg
    for source, targets in CROP_SIZE_LINKS.items():
        size = parsed.get(source)
        for target in targets:
            for where, value in _given_values(args, target):
                if parsed.get(target) is not None and value != size:
                    raise SetupError(
                        f"{where}: {target} is {value}, but crop sizes are set once, in {source} ({size}), "
                        f"and {target} follows it; set {source} instead"
                    )


def _given_values(args: Sequence[str], key: str) -> list[tuple[str, Any]]:
    """(where, value) of each ``--config`` file and ``--key`` argument in ``args`` that sets ``key``."""
    import yaml

    found, i = [], 0
    while i < len(args):
        name, sep, value = args[i].partition("=")
        if not sep and i + 1 < len(args) and name.startswith("-") and not args[i + 1].startswith("--"):
            value, i = args[i + 1], i + 1
        i += 1
        if name in ("--config", "-c") and Path(value).is_file():
            node: Any = yaml.safe_load(Path(value).read_text())
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                found.append((value, node))
        elif name == f"--{key}":
            found.append(("the command line", yaml.safe_load(value)))
    return found


def config_args(configs: Sequence[str | Path], overrides: Sequence[str] = ()) -> list[str]:
    """The command line of the composed ``configs`` (later files override earlier ones), then ``overrides``."""
    for path in configs:
        if not Path(path).is_file():
            raise SetupError(f"config file {path} not found; pass an existing YAML (e.g. configs/ostrack_256.yaml)")
    return [arg for path in configs for arg in ("--config", str(path))] + list(overrides)


def build_from_configs(configs: Sequence[str | Path], overrides: Sequence[str] = ()) -> tuple[Any, Any]:
    """``(model, datamodule)`` of the composed configs, built by the parser `lightning fit` uses.

    ``overrides`` are command-line arguments as `fit` takes them, e.g.
    ``["--model.init_args.teacher_checkpoint=t.ckpt"]``. The data module is instantiated, not set up:
    no dataset is read. ``seed_everything`` is applied, as in `fit`.
    """
    args = config_args(configs, overrides)
    try:
        cli = _ConfigBuilder(args=args, run=False, parser_kwargs={"exit_on_error": False})
    except Exception as err:  # noqa: BLE001 - a parse error becomes one line; setup errors pass through
        if setup_error_in_chain(err) is not None:
            raise
        raise SetupError(f"{' + '.join(map(str, configs))}: {_first_line(err)}") from err
    return cli.model, cli.datamodule


def build_model_from_configs(configs: Sequence[str | Path], overrides: Sequence[str] = ()):  # noqa: ANN201
    """The ``model`` (a ``TrackingModule``) of the composed configs, as `fit` builds it."""
    return build_from_configs(configs, overrides)[0]


def build_datamodule_from_configs(configs: Sequence[str | Path], overrides: Sequence[str] = ()):  # noqa: ANN201
    """The ``data`` module of the composed configs, as `fit` builds it.

    Configs without a ``model`` section (a data-only preset such as
    ``configs/presets/data_bench_mixformerv2.yaml``) are parsed by a parser holding only ``data``,
    added as LightningCLI adds it: there is no network to link the crop sizes to.
    """
    if any("model" in _top_level_keys(path) for path in configs):
        return build_from_configs(configs, overrides)[1]
    from lightning.pytorch import LightningDataModule

    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_lightning_class_args(LightningDataModule, "data", subclass_mode=True)
    args = config_args(configs, overrides)
    parser.add_argument("--config", action=ActionConfigFile)
    try:
        cfg = parser.parse_args(args)
        cfg.pop("config", None)
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in jsonargparse 4.49
        return instantiate(cfg).data
    except Exception as err:  # noqa: BLE001 - as in build_from_configs
        if setup_error_in_chain(err) is not None:
            raise
        raise SetupError(f"{' + '.join(map(str, configs))}: {_first_line(err)}") from err


def _top_level_keys(path: str | Path) -> set[str]:
    import yaml

    if not Path(path).is_file():
        raise SetupError(f"config file {path} not found; pass an existing YAML (e.g. configs/ostrack_256.yaml)")
    data = yaml.safe_load(Path(path).read_text()) or {}
    return set(data) if isinstance(data, dict) else set()


def setup_error_in_chain(err: BaseException | None) -> SetupError | None:
    """The SetupError behind ``err``: jsonargparse wraps errors raised while instantiating classes."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, SetupError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


# Lines of jsonargparse's nested errors that say where, not what (``- `` starts an item of a Union's errors).
_GENERIC_ERROR_LINES = ("Parser key", "Does not validate", "Subtypes:", "Errors:", "Given value",
                        "Problem with given class_path", "- Problem with given class_path",
                        "- Expected a <class 'NoneType'>")


def _first_line(err: BaseException) -> str:
    """jsonargparse's nested error as one line: the key path and the innermost problem."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    keys = [m.group(1) for line in lines if (m := re.match(r'Parser key "([^"]+)"', line))]
    detail = next((line.removeprefix("- ") for line in lines if not line.startswith(_GENERIC_ERROR_LINES)), None)
    if detail is None:
        return lines[0] if lines else type(err).__name__
    return f"{'.'.join(keys)}: {detail}" if keys else detail
