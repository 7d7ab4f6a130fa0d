"""Loggers with the defaults a cluster sweep needs, and the W&B test report."""

from __future__ import annotations

import dataclasses
import json
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only


def wandb_credentials_available() -> bool:
    """True when W&B can authenticate: an API key in the environment or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(netrc_path).authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def flat_config(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested hyper-parameters as ``a.b.c`` keys (W&B's run table, grouping and parallel coordinates want flat keys)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flat_config(value, f"{name}."))
        elif isinstance(value, (list, tuple)) and any(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):
                flat.update(flat_config(item, f"{name}.{i}.") if isinstance(item, Mapping) else {f"{name}.{i}": item})
        else:
            flat[name] = value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
    return flat


class DistilTrackWandbLogger(WandbLogger):
    """W&B logger that runs offline when there are no credentials (or when asked), instead of
    prompting for a key on a compute node. Sync later with ``wandb sync <save_dir>/wandb/offline-run-*``
    (printed at the end of an offline run).

    ``job_type`` is the stage (fit / test), ``sweep_values`` the varied values of a `lightning sweep`
    run: they are logged first, under their short names (``lr``, ``seed``), ahead of the flat keys
    (``loss_weights.giou``, ``optimizer.init_args.lr``) of the module's and data module's hyper-parameters.
    """

    def __init__(
        self,
        project: str = "distiltrack",
        group: str | None = None,
        tags: list[str] | None = None,
        name: str | None = None,
        save_dir: str = "outputs",
        offline: bool | None = None,
        log_model: bool = False,
        job_type: str | None = None,
        sweep_values: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if offline is None:
            offline = not wandb_credentials_available()
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        sweep_values = dict(sweep_values or {})
        config = {key.split(".")[-1]: value for key, value in sweep_values.items()}
        if job_type is not None:
            kwargs["job_type"] = job_type
        super().__init__(
            project=project, group=group, tags=tags, name=name, save_dir=save_dir, offline=offline,
            log_model=log_model, config=config or None, **kwargs,
        )
        self._offline_run = offline

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        params = params if isinstance(params, Mapping) else vars(params)
        self.experiment.config.update(flat_config(_plain(params)), allow_val_change=True)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        if self._offline_run and self._experiment is not None:
            rank_zero_info(f"W&B offline run: sync with `wandb sync {Path(self._experiment.dir).parent}`")


def _plain(value: Any) -> Any:
    """Namespaces, dataclasses and tuples (jsonargparse / Lightning hparams) as dicts and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "as_dict"):
        return _plain(value.as_dict())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _per_frame_gmacs(module: L.LightningModule) -> float | None:
    """GMACs of the tracker's per-frame network call, as `lightning benchmark model` counts them (None when
    the method's tracker has no single network call to count)."""
    from lightning_app.commands.benchmark import per_frame_call
    from trackers.errors import SetupError
    from trackers.evaluation.speed import count_flops

    try:
        _, call = per_frame_call(module, module.device)
    except SetupError:
        return None
    return count_flops(call) / 2e9


class WandbTestReport(L.Callback):
    """After `lightning test`, puts the benchmark's result into the W&B run: the scores of every convention,
    the tracking FPS, the parameter count and the per-frame GMACs in the run summary, the success /
    precision plots as images and a per-sequence table (``test/per_sequence``), all read from the raw
    results and the ``metrics.json`` the test just wrote (rank 0; nothing happens without a W&B logger)."""

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        test_set = getattr(trainer.datamodule, "test_set", None)
        if not trainer.is_global_zero or not loggers or test_set is None:
            return
        import wandb

        from trackers.evaluation.analysis import SequenceAnnotation, evaluate_results
        from trackers.evaluation.plots import plot_reports
        from trackers.evaluation.speed import count_parameters
        from trackers.evaluation.result_files import METRICS_FILE

        results = Path(getattr(pl_module, "results_dir", None) or Path(trainer.default_root_dir) / "results")
        written = sorted(results.rglob(METRICS_FILE), key=lambda p: p.stat().st_mtime)
        if not written:
            return
        raw_dir, record = written[-1].parent, json.loads(written[-1].read_text())
        sequences = [test_set[i] for i in range(len(test_set))]
        annotations = [SequenceAnnotation(s.name, s.gt_boxes, s.visible, None) for s in sequences]
        report = evaluate_results(annotations, raw_dir, "pytracking", name=record.get("tracker"),
                                  dataset=str(record.get("benchmark")))
        summary: dict[str, Any] = {f"test/{conv}/{k}": v for conv, scores in record["metrics"].items()
                                   for k, v in scores.items()}
        summary["test/FPS"] = report.fps
        network = getattr(pl_module, "network", None)
        if network is not None:
            summary["test/params_M"] = count_parameters(network) / 1e6
            summary["test/GMACs"] = _per_frame_gmacs(pl_module)
        columns = ["sequence", "frames", "AUC", "Precision", "NormPrecision"]
        rows = [[name, len(ann.boxes), *(float(report.sequences[name].get(k, float("nan"))) for k in columns[2:])]
                for name, ann in zip((a.name for a in annotations), annotations) if name in report.sequences]
        logged: dict[str, Any] = {"test/per_sequence": wandb.Table(columns=columns, data=rows)}
        if report.overall is not None:
            for path in plot_reports({report.name: report.overall}, "pytracking", raw_dir / "plots", report.name):
                logged[f"test/{path.stem}_plot"] = wandb.Image(str(path))
        for logger in loggers:
            logger.experiment.log(logged)
            logger.experiment.summary.update({k: v for k, v in summary.items() if v is not None})
