"""What every method shares: one-pass evaluation over benchmark sequences in `lightning test`.

Training differs per method; evaluation does not. A method only says how to build its online
tracker (``build_tracker``); the loop, the per-rank sequence split, the metrics (torchmetrics,
synced across DDP ranks) and the result files live here once.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from trackers.evaluation.protocols import benchmark_key, export_official_results, metrics_for
from trackers.evaluation.result_files import read_raw_results, write_raw_results
from trackers.inference.online import OnlineTracker
from trackers.inference.ope import SequenceRun, run_sequence

METRICS_FILE = "metrics.json"  # the test scores, next to the raw results


class TrackingModule(L.LightningModule):
    """Base LightningModule: OPE in ``test_step``, one sequence per step.

    Args:
        results_dir: where raw results go (``<results_dir>/<benchmark>/<tracker>/<seq>.txt``);
            default ``<trainer.default_root_dir>/results``.
        resume_results: reuse finished sequences' result files instead of tracking them again.
        tracker_name: the folder name of this tracker's results.
    """

    def __init__(self, results_dir: str | None = None, resume_results: bool = True, tracker_name: str | None = None):
        super().__init__()
        self.results_dir = results_dir
        self.resume_results = resume_results
        self.tracker_name = tracker_name
        self.test_metrics = nn.ModuleDict()

    EVALUATION_ARGS = ("tracker", "results_dir", "resume_results", "tracker_name")  # test-time only

    def save_training_hyperparameters(self, *ignore: str) -> None:
        """``save_hyperparameters`` without the networks and the test-time arguments.

        LightningCLI re-applies a checkpoint's hyper-parameters over the command line when
        ``--ckpt_path`` is given; test-time settings (search factor, result folder, tracker name)
        must stay what the user asks for at test time.
        """
        frame = inspect.currentframe().f_back  # the subclass __init__ whose arguments are saved
        self.save_hyperparameters(ignore=[*ignore, *self.EVALUATION_ARGS], frame=frame)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.freeze_unused_parameters()

    def freeze_unused_parameters(self) -> None:
        """Freeze every backbone's dead parameters before DDP wraps the module (see OneStreamViT)."""
        from trackers.nn.vit import OneStreamViT

        for module in self.modules():
            if isinstance(module, OneStreamViT):
                for param in module.unused_parameters():
                    param.requires_grad_(False)

    def build_tracker(self) -> OnlineTracker:
        """The online tracker this method evaluates."""
        raise NotImplementedError

    # ------------------------------------------------------------------ evaluation
    def _result_dir(self, benchmark: str, tracker: OnlineTracker) -> Path:
        root = Path(self.results_dir) if self.results_dir else Path(self.trainer.default_root_dir) / "results"
        return root / benchmark / (self.tracker_name or tracker.name)

    def _benchmark(self) -> str:
        spec = getattr(getattr(self.trainer, "datamodule", None), "test", None)
        if spec is None:
            return "lasot"
        return benchmark_key(spec.type, spec.split, spec.root)

    def on_test_epoch_start(self) -> None:
        self.test_metrics = nn.ModuleDict(metrics_for(self._benchmark())).to(self.device)
        self._tracker = self.build_tracker()

    def test_step(self, sequence: Any, batch_idx: int) -> None:
        out_dir = self._result_dir(self._benchmark(), self._tracker)
        result_file = out_dir / f"{sequence.name}.txt"
        if self.resume_results and result_file.exists():
            boxes = read_raw_results(result_file)
            run = SequenceRun(boxes, np.full(len(boxes), np.nan), np.full(len(boxes), np.nan))
        else:
            run = run_sequence(self._tracker, sequence, sequence.gt_boxes[0])
            write_raw_results(out_dir, sequence.name, run.boxes, run.times)
        for metric in self.test_metrics.values():
            metric.update(run.boxes, sequence.gt_boxes, sequence.visible, sequence.image_size, sequence.name)

    def on_test_epoch_end(self) -> None:
        name = self.tracker_name or self._tracker.name
        all_scores: dict[str, dict[str, float]] = {}
        for convention, metric in self.test_metrics.items():
            scores = {k: float(v) for k, v in metric.compute().items()}  # synced across ranks by torchmetrics
            all_scores[convention] = scores
            self.log_dict({f"test/{convention}/{k}": v for k, v in scores.items()}, rank_zero_only=True)
            summary = "  ".join(f"{k}={v:.2f}" for k, v in scores.items())
            rank_zero_info(f"[{name}] {self._benchmark()} ({convention}): {summary}")
        self.trainer.strategy.barrier()  # every rank's result files are written
        if self.trainer.is_global_zero:
            raw_dir = self._result_dir(self._benchmark(), self._tracker)
            raw_dir.mkdir(parents=True, exist_ok=True)  # tools (`lightning pipeline`) read the scores from here
            record = {"benchmark": self._benchmark(), "tracker": name, "metrics": all_scores}
            (raw_dir / METRICS_FILE).write_text(json.dumps(record, indent=2))
            exported = export_official_results(self._benchmark(), raw_dir, name)
            rank_zero_info(f"[{name}] raw results in {raw_dir}" + (f"; official format in {exported}" if exported else ""))
