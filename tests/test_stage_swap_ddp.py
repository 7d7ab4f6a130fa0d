"""Replacement training under 2-process gloo DDP: every rank draws the same stage masks (different across
steps), DDP needs no ``find_unused_parameters`` although replaced blocks are skipped, the replicas stay
equal, and the teacher is frozen on every rank.

The test runs this file as a script (Lightning's DDP launcher re-runs the script for rank 1), with a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_RANK = 6


def _run_ranks(out: Path) -> None:
    import lightning as L
    import torch
    from lightning.pytorch.strategies import DDPStrategy
    from torch.utils.data import DataLoader

    from callbacks.stochastic_stage_swap import StochasticStageSwap
    from trackers.methods.compresstracker import CompressTracker
    from trackers.models.compresstracker import build_student
    from trackers.models.ostrack import OSTrack

    tiny = dict(embed_dim=32, num_heads=2, template_size=32, search_size=64, head_channels=16)
    torch.manual_seed(0)
    teacher_path = out / "teacher.pt"
    if int(os.environ.get("LOCAL_RANK", 0)) == 0 and not teacher_path.exists():
        torch.save(OSTrack(depth=6, **tiny).state_dict(), teacher_path.with_suffix(".tmp"))
        teacher_path.with_suffix(".tmp").rename(teacher_path)

    g = torch.Generator().manual_seed(0)
    batches = [
        {"template": torch.randn(2, 1, 3, 32, 32, generator=g), "search": torch.randn(2, 3, 64, 64, generator=g),
         "search_box": torch.tensor([[0.5, 0.5, 0.3, 0.3], [0.45, 0.55, 0.25, 0.35]]),
         "search_visible": torch.ones(2, dtype=torch.bool)}
        for _ in range(2 * STEPS_PER_RANK)
    ]  # fmt: skip

    class Recorder(L.Callback):
        def __init__(self) -> None:
            self.masks: list[list[bool]] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
            self.masks.append(list(pl_module.stage_mask))

        def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
            teacher = pl_module.teacher
            record = {
                "masks": self.masks,
                "student_checksum": float(sum(p.double().sum() for p in pl_module.network.parameters())),
                "teacher_frozen": not any(p.requires_grad for p in teacher.parameters()) and not teacher.training,
            }
            (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))

    while not teacher_path.exists():  # rank 1 waits for rank 0's file
        time.sleep(0.1)
    module = CompressTracker(
        network=build_student(3, 6, 0.1, **tiny), teacher=OSTrack(depth=6, **tiny), teacher_checkpoint=str(teacher_path)
    )
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy=DDPStrategy(process_group_backend="gloo", find_unused_parameters=False),
        max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(out), callbacks=[StochasticStageSwap(), Recorder()],
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))


def test_ddp_ranks_draw_identical_masks_without_find_unused_parameters(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, __file__, str(tmp_path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=420)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]["masks"]) == STEPS_PER_RANK
    assert ranks[0]["masks"] == ranks[1]["masks"]  # every rank runs the same path
    assert len({tuple(m) for m in ranks[0]["masks"]}) > 1  # ... which changes from step to step
    assert any(not all(m) for m in ranks[0]["masks"])  # some steps skipped student blocks (DDP did not hang)
    assert ranks[0]["student_checksum"] == ranks[1]["student_checksum"]  # replicas stayed in sync
    assert all(r["teacher_frozen"] for r in ranks)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _run_ranks(Path(sys.argv[1]))
