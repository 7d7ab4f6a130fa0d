"""Progressive model depth pruning (MixFormerV2 §3.2.2): fade chosen blocks out, then remove them.

Epoch by epoch the blocks to be eliminated get a residual scale gamma that falls along a cosine
from 1 to 0 over ``decay_epochs`` (``callbacks.schedules.layer_decay_gamma``); the callback writes
it onto the module as ``layer_gamma`` and the module passes it to the backbone. After
``remove_after_epoch`` the blocks are removed (dropped and the rest renumbered), and training goes
on as the shallower network in the same run.

Official code (default) vs paper (spec mixformerv2.md §4.2, §9 #6):
- ``schedule``: 'official' reaches gamma = 0 at epoch m - 1; 'paper' at epoch m.
- ``freeze_fading``: the official code freezes the fading blocks; the paper does not say so.
- ``optimizer_after_removal``: 'rebuild' starts a fresh optimizer and LR schedule, like the official
  separate 500-epoch fine-tune (2b); 'continue' keeps optimizer state and LR schedule and only drops
  the removed parameters, like the paper's single stage.
How gamma enters a block (each residual branch vs the whole block) is the network's ``gamma_mode``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import lightning as L
from torch import nn

from callbacks.schedules import layer_decay_gamma
from trackers.errors import SetupError
from trackers.freezing import freeze

DecaySchedule = Literal["official", "paper"]
AfterRemoval = Literal["rebuild", "continue"]


class DepthPrunable(Protocol):
    """What a LightningModule offers LayerDecay (``DeepToShallowDistillation`` does)."""

    network: nn.Module  # with ``backbone.blocks``
    layer_gamma: dict[int, float]
    pruned_blocks: tuple[int, ...]

    def prune_blocks(self, blocks: Sequence[int]) -> None:
        """Remove blocks (indices of the current network) and renumber everything that refers to blocks."""


class LayerDecay(L.Callback):
    """Fade ``blocks`` out with the cosine gamma over ``decay_epochs``, remove them after ``remove_after_epoch``.

    Args:
        blocks: 0-based indices of the blocks to eliminate (official 12 -> 8: [0, 3, 6, 9]).
        decay_epochs: m, epochs of the cosine (official 40).
        remove_after_epoch: last epoch (1-based) run with the faded blocks (official 45: the length
            of the 2a run); None keeps them (gamma 0) until the end of the run.
        schedule, freeze_fading, optimizer_after_removal: official vs paper, see the module doc.
    """

    def __init__(
        self,
        blocks: Sequence[int],
        decay_epochs: int = 40,
        remove_after_epoch: int | None = 45,
        schedule: DecaySchedule = "official",
        freeze_fading: bool = True,
        optimizer_after_removal: AfterRemoval = "rebuild",
    ) -> None:
        where = "trainer.callbacks LayerDecay"
        if not blocks:
            raise SetupError(f"{where}.init_args.blocks is empty: list the blocks to remove")
        if decay_epochs < 1:
            raise SetupError(f"{where}.init_args.decay_epochs must be >= 1, got {decay_epochs}")
        if schedule not in ("official", "paper"):
            raise SetupError(f"{where}.init_args.schedule must be 'official' or 'paper', got {schedule!r}")
        if optimizer_after_removal not in ("rebuild", "continue"):
            raise SetupError(
                f"{where}.init_args.optimizer_after_removal must be 'rebuild' or 'continue', got {optimizer_after_removal!r}"
            )
        self.blocks = tuple(sorted(set(blocks)))
        self.decay_epochs = decay_epochs
        self.remove_after_epoch = remove_after_epoch
        self.schedule: DecaySchedule = schedule
        self.freeze_fading = freeze_fading
        self.optimizer_after_removal: AfterRemoval = optimizer_after_removal

    def gamma(self, epoch: int) -> float:
        """Residual scale of the fading blocks during 1-based ``epoch``."""
        return layer_decay_gamma(epoch, self.decay_epochs, official=self.schedule == "official")

    def removed(self, pl_module: DepthPrunable) -> bool:
        return bool(pl_module.pruned_blocks)

    # ------------------------------------------------------------------ hooks

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Check the blocks and freeze them before DDP wraps the model and the optimizer is built."""
        if stage != "fit" or self.removed(pl_module):
            return
        blocks = _blocks_of(pl_module)
        if self.blocks[-1] >= len(blocks):
            raise SetupError(
                f"trainer.callbacks LayerDecay.init_args.blocks {list(self.blocks)} do not exist in the "
                f"{len(blocks)}-block network"
            )
        if self.freeze_fading:  # official: no gradients, but the blocks still run in train mode (DropPath)
            for i in self.blocks:
                freeze(blocks[i], mode="train")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if not self.removed(pl_module) and self.remove_after_epoch is not None and epoch > self.remove_after_epoch:
            self.remove(trainer, pl_module)
        if self.removed(pl_module):
            pl_module.layer_gamma = {}
            return
        gamma = self.gamma(epoch)
        pl_module.layer_gamma = {i: gamma for i in self.blocks}
        pl_module.log("schedule/layer_gamma", gamma, on_step=False, on_epoch=True, sync_dist=False)

    # ------------------------------------------------------------------ removal

    def remove(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Drop the blocks, then make DDP and the optimizer match the shallower network."""
        blocks = _blocks_of(pl_module)
        removed_params = [p for i in self.blocks for p in blocks[i].parameters()]
        trainable_removed = any(p.requires_grad for p in removed_params)
        pl_module.prune_blocks(self.blocks)
        if trainable_removed:
            _rewrap_ddp(trainer)
        if self.optimizer_after_removal == "rebuild":
            trainer.strategy.setup_optimizers(trainer)
        else:
            drop_from_optimizers(trainer.optimizers, removed_params)


def drop_from_optimizers(optimizers: Sequence, params: Sequence[nn.Parameter]) -> None:
    """Remove ``params`` from every param group and their state (Adam moments) from the optimizers."""
    gone = {id(p) for p in params}
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in gone]
        for p in params:
            optimizer.state.pop(p, None)


def _blocks_of(pl_module: L.LightningModule) -> nn.ModuleList:
    try:
        return pl_module.network.backbone.blocks
    except AttributeError:
        raise SetupError(
            f"LayerDecay needs a module with network.backbone.blocks and prune_blocks(); "
            f"{type(pl_module).__name__} has none (use it with DeepToShallowDistillation)"
        ) from None


def _rewrap_ddp(trainer: L.Trainer) -> None:
    """A DDP reducer still expects gradients of removed trainable parameters: wrap the pruned module anew."""
    from lightning.pytorch.strategies import DDPStrategy
    from torch.nn.parallel import DistributedDataParallel

    strategy = trainer.strategy
    if isinstance(strategy, DDPStrategy) and isinstance(strategy.model, DistributedDataParallel):
        strategy.model = trainer.lightning_module
        strategy.configure_ddp()
