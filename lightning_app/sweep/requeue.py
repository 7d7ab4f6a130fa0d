"""Take SLURM's warning signal at a batch boundary, so that a requeued run does nothing twice.

Lightning's ``SLURMEnvironment`` handler saves ``hpc_ckpt_<n>.ckpt`` and requeues the job the moment
SIGUSR1 arrives, which may be in the middle of a training step: the forward pass has already
updated BatchNorm's running statistics, the resumed run repeats that step and updates them once
more. This callback defers Lightning's own handler (it does not replace it) to the end of the
current batch, with every DDP rank agreeing on which batch that is; the checkpoint then holds
exactly the finished batches and the resumed run continues after them (the loader's position is in
the checkpoint, see ``datamodules.datamodule.ResumableLoader``).
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

import lightning as L


class RequeueAtBatchEnd(L.Callback):
    """Wraps the requeue-signal handler Lightning installed for the fit; runs it at the next batch end."""

    def __init__(self, signal_name: str = "SIGUSR1") -> None:
        self.signum = signal.Signals[signal_name]
        self._lightning_handler: Any = None
        self._pending: tuple[int, FrameType | None] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        handler = signal.getsignal(self.signum)
        if not callable(handler):  # not on SLURM or auto-requeue off: nothing to defer
            return
        self._lightning_handler = handler
        signal.signal(self.signum, self._defer)

    def _defer(self, signum: int, frame: FrameType | None) -> None:
        self._pending = (signum, frame)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._lightning_handler is None:
            return
        if trainer.strategy.reduce_boolean_decision(self._pending is not None, all=False):  # any rank signalled
            signum, frame = self._pending or (int(self.signum), None)
            self._pending = None
            self._lightning_handler(signum, frame)  # saves the checkpoint on every rank and requeues

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._lightning_handler is not None:
            signal.signal(self.signum, self._lightning_handler)
            self._lightning_handler = None
