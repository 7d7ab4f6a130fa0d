"""What every method shares: the training skeleton and one-pass evaluation in `lightning test`.

A method implements two things (both abstract): ``compute_losses(batch)`` (a dict of tensors with
a ``total`` key, what ``training_step`` returns and ``validation_step`` logs) and ``build_tracker()``
(its online tracker; every TrackingModule has one, so tools need no capability check). The steps,
their logging, the optimizer (injected callables on the project's parameter
groups, ``trackers.methods.optim``), the hyper-parameters saved to checkpoints, the OPE loop, the
per-rank sequence split, the metrics (torchmetrics, synced across DDP ranks) and the result files
live here once.

Timing of initial weights (every method): weights that come from files (MAE, an init checkpoint,
the teacher) are read in ``setup("fit")``, after the CLI checked the data and before Lightning
restores a ``--ckpt_path`` (which then takes precedence); never in ``__init__``, so `lightning test`
/ `validate` of a trained checkpoint need none of those files.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from trackers.evaluation.protocols import benchmark_key, export_official_results, metrics_for
from trackers.evaluation.result_files import METRICS_FILE, read_raw_results, write_per_frame_values, write_raw_results
from trackers.freezing import freeze_parameters
from trackers.inference.online import OnlineTracker
from trackers.inference.ope import SequenceRun, run_sequence
from trackers.inference.runtime import (DEFAULT_BACKEND, DEFAULT_PRECISION, FP32_LINEAR_ENV, apply_runtime,
                                       fp32_linear_in_use, runtime_suffix)
from trackers.methods.optim import ParamGroups, build_optimizer
from trackers.nn.vit import OneStreamViT
from trackers.types import TrackingBatch


NETWORK_ARGS = ("network", "teacher")  # saved as weights, not as hyper-parameters
EVALUATION_ARGS = ("results_dir", "resume_results", "tracker_name", "tracker")  # test-time only
INJECTED_CALLABLE_ARGS = ("optimizer", "lr_scheduler")


class TrackingModule(L.LightningModule, ABC):
    """Base LightningModule: the shared training steps and OPE in ``test_step``, one sequence per step.

    Args:
        optimizer: builds the optimizer from the parameter groups (LightningCLI ``OptimizerCallable``).
        lr_scheduler: builds the LR schedule from the optimizer, stepped per epoch.
        param_groups: the backbone's LR multiplier and how its parameters are named.
        results_dir: where raw results go (``<results_dir>/<benchmark>/<tracker>/<seq>.txt``);
            default ``<trainer.default_root_dir>/results``.
        resume_results: reuse finished sequences' result files instead of tracking them again.
        tracker_name: the folder name of this tracker's results.
    """

    network: nn.Module  # what the optimizer trains and the tracker runs (a teacher stays outside it)

    def __init__(
        self,
        *,
        # Lambdas on purpose: jsonargparse reads them as class_path + init_args (see trackers.methods.optim).
        optimizer: OptimizerCallable = lambda params: torch.optim.AdamW(params, lr=4e-4, weight_decay=1e-4),
        lr_scheduler: LRSchedulerCallable = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=240, gamma=0.1),
        param_groups: ParamGroups = ParamGroups(),
        results_dir: str | None = None,
        resume_results: bool = True,
        tracker_name: str | None = None,
    ) -> None:
        super().__init__()
        self._save_training_hyperparameters()
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.param_groups = param_groups
        self.results_dir = results_dir
        self.resume_results = resume_results
        self.tracker_name = tracker_name
        self.test_metrics = nn.ModuleDict()
        self.runtime_precision, self.runtime_backend = DEFAULT_PRECISION, DEFAULT_BACKEND

    def set_runtime(self, precision: str = DEFAULT_PRECISION, backend: str = DEFAULT_BACKEND) -> None:
        """Precision and backend of the test tracker (`lightning test --precision --backend`,
        ``trackers.inference.runtime``); a non-default one is appended to the result folder's name."""
        self.runtime_precision, self.runtime_backend = precision, backend

    def _save_training_hyperparameters(self) -> None:
        """Every constructor argument of the class hierarchy (Lightning collects them from the
        ``__init__`` frames) except the networks and the test-time arguments.

        LightningCLI re-applies a checkpoint's hyper-parameters over the command line when
        ``--ckpt_path`` is given; test-time settings (search factor, result folder, tracker name)
        must stay what the user asks for at test time. Under the CLI the injected optimizer and
        schedule are saved as their config (``class_path`` + ``init_args``); built from Python
        they are bare callables, which a checkpoint cannot carry, so they are left out.
        """
        self.save_hyperparameters(ignore=[*NETWORK_ARGS, *EVALUATION_ARGS])
        for key in INJECTED_CALLABLE_ARGS:
            if callable(self.hparams.get(key)):
                del self._hparams[key]
                del self._hparams_initial[key]

    # ------------------------------------------------------------------ training
    @abstractmethod
    def compute_losses(self, batch: TrackingBatch) -> dict[str, Tensor]:
        """The method's losses on a batch: ``total`` is optimised; every entry is logged."""

    def _log_losses(self, losses: dict[str, Tensor], batch: TrackingBatch, split: str) -> None:
        batch_size = batch["search"].shape[0]
        logged = {f"{split}/{k}": v for k, v in losses.items()}
        if split == "train":
            self.log_dict(logged, prog_bar=True, batch_size=batch_size)
        else:
            self.log_dict(logged, sync_dist=True, batch_size=batch_size)

    def training_step(self, batch: TrackingBatch, batch_idx: int) -> Tensor:
        losses = self.compute_losses(batch)
        self._log_losses(losses, batch, "train")
        return losses["total"]

    def validation_step(self, batch: TrackingBatch, batch_idx: int) -> None:
        self._log_losses(self.compute_losses(batch), batch, "val")

    def configure_optimizers(self) -> dict:
        """The injected optimizer and schedule over ``self.network``'s trainable parameters only."""
        return build_optimizer(self.network, self.optimizer, self.lr_scheduler, self.param_groups)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.freeze_unused_parameters()

    def freeze_unused_parameters(self) -> None:
        """Freeze every backbone's dead parameters before DDP wraps the module (see OneStreamViT)."""
        for module in self.modules():
            if isinstance(module, OneStreamViT):
                freeze_parameters(module.unused_parameters())

    # ------------------------------------------------------------------ evaluation
    @abstractmethod
    def build_tracker(self) -> OnlineTracker:
        """The online tracker this method evaluates (every TrackingModule has one)."""

    def _result_dir(self, benchmark: str, tracker: OnlineTracker) -> Path:
        return results_folder(self.results_dir, self.trainer.default_root_dir, benchmark, self.result_name(tracker))

    def result_name(self, tracker: OnlineTracker) -> str:
        """The results' tracker name: ``tracker_name`` (plus the runtime suffix, e.g. ``_bf16``), else the
        tracker's own (which :func:`apply_runtime` already suffixed)."""
        if self.tracker_name:
            return self.tracker_name + runtime_suffix(self.runtime_precision, self.runtime_backend)
        return tracker.name

    def _benchmark(self) -> str:
        spec = getattr(getattr(self.trainer, "datamodule", None), "test", None)
        if spec is None:
            return "lasot"
        return benchmark_key(spec.type, spec.split, spec.root)

    def benchmark_under_test(self) -> str | None:
        """The benchmark key of the attached trainer's test set (None outside a Trainer)."""
        return self._benchmark() if self._trainer is not None else None

    def on_test_epoch_start(self) -> None:
        self.test_metrics = nn.ModuleDict(metrics_for(self._benchmark())).to(self.device)
        self._tracker = apply_runtime(self.build_tracker(), self.runtime_precision, self.runtime_backend)
        if fp32_linear_in_use(self.runtime_precision, self.runtime_backend, self.device) == "onednn":
            rank_zero_info(f"[{self.result_name(self._tracker)}] fp32 Linear layers run through oneDNN (the same fp32 "
                           f"arithmetic, faster on this CPU); {FP32_LINEAR_ENV}=torch gives torch's BLAS")
        self._sequences = torch.zeros(2, dtype=torch.long)  # (tracked here, reused from result files)

    def test_step(self, sequence: Any, batch_idx: int) -> None:
        out_dir = self._result_dir(self._benchmark(), self._tracker)
        result_file = out_dir / f"{sequence.name}.txt"
        if self.resume_results and result_file.exists():
            boxes = read_raw_results(result_file)
            run = SequenceRun(boxes, np.full(len(boxes), np.nan), np.full(len(boxes), np.nan))
            self._sequences[1] += 1
        else:
            self._sequences[0] += 1
            run = run_sequence(self._tracker, sequence, sequence.gt_boxes[0])
            write_per_frame_values(out_dir, sequence.name, run.extras)  # before the box file: see finished_sequences
            write_raw_results(out_dir, sequence.name, run.boxes, run.times)
        for metric in self.test_metrics.values():
            metric.update(run.boxes, sequence.gt_boxes, sequence.visible, sequence.image_size, sequence.name)

    def on_test_epoch_end(self) -> None:
        name = self.result_name(self._tracker)
        all_scores: dict[str, dict[str, float]] = {}
        for convention, metric in self.test_metrics.items():
            scores = {k: float(v) for k, v in metric.compute().items()}  # synced across ranks by torchmetrics
            all_scores[convention] = scores
            self.log_dict({f"test/{convention}/{k}": v for k, v in scores.items()}, rank_zero_only=True)
            summary = "  ".join(f"{k}={v:.2f}" for k, v in scores.items())
            rank_zero_info(f"[{name}] {self._benchmark()} ({convention}): {summary}")
        self.trainer.strategy.barrier()  # every rank's result files are written
        self._report_reused(name)
        if self.trainer.is_global_zero:
            raw_dir = self._result_dir(self._benchmark(), self._tracker)
            raw_dir.mkdir(parents=True, exist_ok=True)  # tools (`lightning pipeline`) read the scores from here
            record = {"benchmark": self._benchmark(), "tracker": name, "metrics": all_scores}
            (raw_dir / METRICS_FILE).write_text(json.dumps(record, indent=2))
            exported = export_official_results(self._benchmark(), raw_dir, name)
            rank_zero_info(f"[{name}] raw results in {raw_dir}" + (f"; official format in {exported}" if exported else ""))


    def _report_reused(self, name: str) -> None:
        """Say how many sequences came from earlier result files: a re-run after a change of runtime or
        weights would otherwise report the old boxes' scores as if they were new."""
        tracked, reused = (int(v) for v in self.trainer.strategy.reduce(self._sequences.to(self.device), reduce_op="sum"))
        if reused:
            raw_dir = self._result_dir(self._benchmark(), self._tracker)
            rank_zero_warn(f"[{name}] {reused} of {tracked + reused} sequences were not tracked: their boxes are "
                           f"reused from the result files in {raw_dir} (delete that folder, or pass "
                           "--model.init_args.resume_results false, to track them again)")


def results_folder(results_dir: str | Path | None, default_root_dir: str | Path, benchmark: str, name: str) -> Path:
    """Where a test run writes ``<benchmark>/<tracker>/`` (raw results, ``metrics.json``): ``results_dir``,
    default ``<default_root_dir>/results``; tools that write next to the results (speed JSON) use it too."""
    root = Path(results_dir) if results_dir else Path(default_root_dir) / "results"
    return root / benchmark / name
