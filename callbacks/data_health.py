"""DataHealthMonitor: bad data never hides — log how many samples had to be redrawn each epoch.

Every batch of ``TrackingDataModule`` carries ``redraws`` (per sample, the draws rejected before
it: unreadable frames, crops entirely in the padding...), counted inside whichever DataLoader
worker made the sample. This callback sums them over the epoch and across DDP ranks and logs
``data/redraws`` (training) and ``data/val_redraws`` (validation), plus ``data/skipped_sequences``
(sequences the sampler never draws: unreadable annotations, too short). The warnings the data
module emits name the files; these figures show how much it matters, per epoch, on the dashboard.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn


class DataHealthMonitor(L.Callback):
    """Logs redraw counts per epoch; warns when more than ``warn_above`` of an epoch's samples were redrawn."""

    def __init__(self, warn_above: float | None = 0.1) -> None:
        self.warn_above = warn_above
        self._redraws: torch.Tensor | int = 0  # stays on the batch's device: no host sync per step
        self._samples = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._redraws, self._samples = 0, 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._log_batch(pl_module, batch, "data/redraws", count=True)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            self._log_batch(pl_module, batch, "data/val_redraws", count=False)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        skipped = getattr(trainer.datamodule, "skipped_sequences", None) if trainer.datamodule else None
        if skipped is not None:
            total = float(sum(len(names) for names in skipped.values()))
            pl_module.log("data/skipped_sequences", total, on_step=False, on_epoch=True, rank_zero_only=True)
        redraws = int(self._redraws)
        if self.warn_above is not None and self._samples and redraws > self.warn_above * self._samples:
            rank_zero_warn(f"epoch {trainer.current_epoch}: {redraws} redraws for {self._samples} samples on "
                           "rank 0; see the data warnings above for the files involved")

    def _log_batch(self, pl_module: L.LightningModule, batch: Any, name: str, count: bool) -> None:
        redraws = batch.get("redraws") if isinstance(batch, dict) else None
        if redraws is None:
            return
        total = redraws.sum()
        if count:
            self._redraws = self._redraws + total
            self._samples += int(redraws.numel())
        pl_module.log(name, total.to(torch.float32), on_step=False, on_epoch=True, reduce_fx="sum", sync_dist=True,
                      batch_size=int(redraws.numel()))
