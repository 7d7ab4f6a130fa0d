"""CompressTracker's replacement training: which stages run the frozen teacher's blocks at each step.

At each epoch start the replacement probability p (the probability that a stage runs its *student*
block) comes from the progressive schedule (``callbacks.schedules.replacement_probability``); before
each training step one Bernoulli(p) draw per stage decides the path of the whole batch, and the
mask is written onto the module (``stage_mask[i]`` True = student block i, False = the teacher's
blocks of stage i). The method reads both; it never draws or reads the epoch itself.

Official code vs paper (spec compresstracker.md §2.4, §7.4-5):
- ``draw='official'``: an all-teacher draw is replaced by one uniformly chosen student stage (and
  p < 0.5 runs exactly one random student stage, a branch the official schedule never reaches);
  ``draw='independent'``: the paper's independent per-stage draws (an all-teacher path can occur).
- ``slope``: the code's ramp ``(1 - p_init)`` or the paper's ``p_init``; ``progressive: false`` keeps p constant.
- ``per_rank_draws``: the official run seeds each DDP rank differently (3407 + rank), so ranks run
  different paths; by default every rank draws the same masks (one seed), so all replicas run the
  same network each step.

The draws come from a ``torch.Generator`` this callback owns: its state is saved with the
checkpoint (``state_dict``) and restored on resume, so a resumed run draws the masks an
uninterrupted one would (exactly so for the default shared draws; with ``per_rank_draws`` the
checkpoint holds only rank 0's state, so a resumed run re-seeds each rank from its rank and the
global step: reproducible and still per rank, but not the uninterrupted run's masks). The draws
never touch the global RNGs (data augmentation, DropPath).
"""

from __future__ import annotations

import os
from typing import Any, Literal, Protocol

import lightning as L
import torch

from callbacks.schedules import replacement_probability
from trackers.errors import SetupError

DrawMode = Literal["official", "independent"]
Slope = Literal["official", "paper"]
OFFICIAL_SEED = 3407  # the official training seed (3407 + local rank)
RESUME_SEED_STRIDE = 1_000_003  # per-rank re-seeding on resume: (seed + rank) * stride + global step
GLOBAL_SEED_VARIABLE = "PL_GLOBAL_SEED"  # set by seed_everything: each seed of a chain draws its own masks


class StageSwappable(Protocol):
    """What a LightningModule offers the stage swap (``CompressTrackerDistillation`` does)."""

    num_stages: int
    replacement_p: float
    stage_mask: tuple[bool, ...] | None  # per stage: True = student block, False = teacher blocks


def draw_stage_mask(num_stages: int, p: float, generator: torch.Generator, draw: DrawMode = "official") -> tuple[bool, ...]:
    """One path: per stage True (student) with probability ``p``, from ``generator`` (spec §2.4).

    Both modes consume the same random numbers for a given outcome, so switching ``draw`` changes
    only the rule for an all-teacher draw (and for p < 0.5).
    """
    if draw == "official" and p < 0.5:  # official branch for small p: exactly one random student stage
        forced = int(torch.randint(num_stages, (1,), generator=generator))
        return tuple(i == forced for i in range(num_stages))
    student = torch.rand(num_stages, generator=generator) < p
    if draw == "official" and not bool(student.any()):
        forced = int(torch.randint(num_stages, (1,), generator=generator))
        return tuple(i == forced for i in range(num_stages))
    return tuple(bool(s) for s in student)


class StochasticStageSwap(L.Callback):
    """Writes ``replacement_p`` per epoch and ``stage_mask`` per training step onto the module.

    Args:
        p_init: p of the first ``warmup_fraction`` of the epochs (official 0.5).
        warmup_fraction, end_fraction: alpha_1 and alpha_2 of the schedule (official 0.1 each).
        slope: 'official' ramp ``(1 - p_init)`` or 'paper' ramp ``p_init``.
        progressive: False keeps p = p_init (the paper's constant-p ablation).
        draw: 'official' (never all-teacher) or 'independent' (the paper's pseudo-code).
        seed: seed of the callback's generator; None: the run's ``seed_everything`` (else 3407).
        per_rank_draws: seed + global rank per rank (official: ranks run different paths).
    """

    def __init__(
        self,
        p_init: float = 0.5,
        warmup_fraction: float = 0.1,
        end_fraction: float = 0.1,
        slope: Slope = "official",
        progressive: bool = True,
        draw: DrawMode = "official",
        seed: int | None = None,
        per_rank_draws: bool = False,
    ) -> None:
        where = "stage_swap"
        if not 0.0 < p_init <= 1.0:
            raise SetupError(f"{where}.p_init must be in (0, 1] (the probability of a student stage), got {p_init}")
        if slope not in ("official", "paper"):
            raise SetupError(f"{where}.slope must be 'official' or 'paper', got {slope!r}")
        if draw not in ("official", "independent"):
            raise SetupError(f"{where}.draw must be 'official' or 'independent', got {draw!r}")
        self.p_init = p_init
        self.warmup_fraction = warmup_fraction
        self.end_fraction = end_fraction
        self.slope: Slope = slope
        self.progressive = progressive
        self.draw: DrawMode = draw
        self.seed = seed
        self.per_rank_draws = per_rank_draws
        self.generator = torch.Generator().manual_seed(self.base_seed())
        self._restored = False

    def base_seed(self) -> int:
        if self.seed is not None:
            return self.seed
        return int(os.environ.get(GLOBAL_SEED_VARIABLE, OFFICIAL_SEED))

    def probability(self, epoch: int, max_epochs: int) -> float:
        """p during 1-based ``epoch`` of ``max_epochs``."""
        return replacement_probability(
            epoch, max_epochs, self.p_init, self.warmup_fraction, self.end_fraction, self.slope, self.progressive
        )

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not isinstance(getattr(pl_module, "num_stages", None), int):
            raise SetupError(
                f"StochasticStageSwap needs a module with num_stages, replacement_p and stage_mask; "
                f"{type(pl_module).__name__} has none (use it with trackers.methods.compresstracker)"
            )
        if not self._restored:  # a restored generator state (resume) runs after setup and wins
            self.generator.manual_seed(self.base_seed() + (trainer.global_rank if self.per_rank_draws else 0))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._restored and self.per_rank_draws:
            rank_seed = self.base_seed() + trainer.global_rank
            self.generator.manual_seed(rank_seed * RESUME_SEED_STRIDE + trainer.global_step)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else trainer.current_epoch + 1
        p = self.probability(trainer.current_epoch + 1, max_epochs)
        pl_module.replacement_p = p
        pl_module.log("schedule/replacement_p", p, on_step=False, on_epoch=True, sync_dist=False)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        pl_module.stage_mask = draw_stage_mask(pl_module.num_stages, pl_module.replacement_p, self.generator, self.draw)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.stage_mask = None  # validation and tracking run the pure student

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "seed": self.seed, "per_rank_draws": self.per_rank_draws}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.generator.set_state(state_dict["generator"])
        self._restored = True
