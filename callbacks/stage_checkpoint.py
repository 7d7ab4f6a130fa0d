"""Save the trained model where a pipeline stage's successor expects it (``lightning pipeline``)."""

from __future__ import annotations

import lightning as L


class StageCheckpoint(L.Callback):
    """Saves the checkpoint to ``path`` when ``fit`` ends (called on every rank; rank 0 writes).

    Added by ``lightning pipeline`` to each stage's ``fit`` command line; the next stage reads the
    file as its teacher or initial weights.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path)
