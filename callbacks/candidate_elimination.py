"""Sets OSTrack's candidate-elimination keep rate on the module at each epoch start."""

from __future__ import annotations

from typing import Protocol

import lightning as L

from callbacks.schedules import ce_keep_rate


class KeepRateScheduled(Protocol):
    """What a LightningModule offers the schedule (``CenterHeadTraining`` does): the rate its forward uses."""

    ce_keep_rate: float | None


class CandidateEliminationSchedule(L.Callback):
    """Writes ``pl_module.ce_keep_rate`` from the official warm-up schedule.

    The official trainer counts epochs from 1, so epoch ``trainer.current_epoch + 1`` is used.
    """

    def __init__(self, start_epoch: int = 20, warmup_epochs: int = 80, final_keep_ratio: float = 0.7) -> None:
        self.start_epoch = start_epoch
        self.warmup_epochs = warmup_epochs
        self.final_keep_ratio = final_keep_ratio

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: KeepRateScheduled) -> None:
        rate = ce_keep_rate(trainer.current_epoch + 1, self.start_epoch, self.warmup_epochs, self.final_keep_ratio)
        pl_module.ce_keep_rate = rate
        pl_module.log("schedule/ce_keep_rate", rate, on_epoch=True, on_step=False, sync_dist=False)
